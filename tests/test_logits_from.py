"""cascade.logits_from=predecessor (TAKD's chain for the task), through the real stage script:
an assistant's stage writes its fine-tuned logits, the model distilled from it learns them, and a
folder of another model's logits is refused before any model loads.

The plain baseline (L1-plain) learns none of it: the labels alone, whatever is switched on.

The cascade is the 3-layer teacher of test_scale cut to L3 -> L2 -> L1 (two steps).
"""

import json

import numpy as np
import pytest
import yaml

from kdcascade import classify, data, models, schedule, teacher_logits
from test_scale import run_dir, stage, workspace  # noqa: F401 (a fixture)
from test_stage_errors import assert_one_line_error, call_stage

SOFT = {"weight": 0.5, "temperature": 2.0}


def chain_dir(ws, name, logits_from):
    """A run folder for the two-step cascade, its schedule as Hydra would compose it."""
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["cascade"].update(student_layers=1, steps=2, logits_from=logits_from)
    d = run_dir(ws, name, cascade__student_layers=1, cascade__steps=2,
                cascade__logits_from=logits_from, finetune__soft_labels=SOFT,
                **{f"cascade__{k}": v for k, v in schedule.stored(params).items()})
    teacher = str(ws / "models" / "L3")
    encoder, tokenizer = models.load_encoder(teacher), models.load_tokenizer(teacher)
    for layers in (2, 1):  # the assistant and the student, cut from the teacher
        models.truncate(encoder, list(range(layers))).save_pretrained(d / "models" / f"L{layers}")
        tokenizer.save_pretrained(d / "models" / f"L{layers}")
    return d


def finetune(d, ws, model, *extra):
    return stage("finetune.py", d, "--model", model, "--models", "models", "--data",
                 ws / "prepared", "--out", f"out/{model}", "--live", f"live-{model}", *extra)


def losses(d, model="L1") -> list[float]:
    lines = (d / f"live-{model}" / "plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    return [float(line.split("\t")[-1]) for line in lines]


@pytest.fixture(scope="module")
def chain(workspace):  # noqa: F811
    d = chain_dir(workspace, "chain", "predecessor")
    finetune(d, workspace, "L2", "--logits-out", "logits/L2")
    return d


def test_the_assistant_writes_its_own_fine_tuned_logits(workspace, chain):  # noqa: F811
    sources = json.loads((chain / "logits/L2/sources.json").read_text())
    assert sources["model"] == "L2" and list(sources["splits"]) == ["train"]
    train = data.read_split(workspace / "prepared", "train")
    expected = classify.logits(classify.load_classifier(str(chain / "out/L2")), train, 16, "cpu")
    np.testing.assert_allclose(np.load(chain / "logits/L2/train.npy"), expected,
                               rtol=1e-4, atol=1e-5)


def test_the_student_learns_its_predecessors_logits(workspace, chain):  # noqa: F811
    """L1 learns the logits in L2's folder: the same fine-tuning against L2's logits negated
    gives other losses."""
    finetune(chain, workspace, "L1", "--teacher-logits", "logits/L2", "--logits-out", "logits/L1")
    ours = losses(chain)
    # nobody learns the student's logits: its folder names no split
    assert json.loads((chain / "logits/L1/sources.json").read_text()) == {"model": "L1",
                                                                         "splits": {}}
    flipped = chain / "logits/flipped"
    flipped.mkdir(exist_ok=True)
    train = workspace / "prepared" / "train.arrow"
    teacher_logits.write(flipped, "L2", {"train": (train, -np.load(chain / "logits/L2/train.npy"))})
    finetune(chain, workspace, "L1", "--teacher-logits", "logits/flipped")
    assert len(ours) > 0 and losses(chain) != pytest.approx(ours, rel=1e-3)


def teachers_logits(d, ws):
    """A folder of the teacher's logits on train (all zero: uniform soft labels)."""
    folder, train = d / "logits/L3", ws / "prepared" / "train.arrow"
    folder.mkdir(parents=True, exist_ok=True)
    teacher_logits.write(folder, "L3", {"train": (train, np.zeros((len(data.read_split(train.parent, "train")),
                                                                     3)))})


def test_logits_of_the_wrong_model_are_refused(workspace, chain):  # noqa: F811
    """With logits_from=predecessor the student learns L2's: the teacher's folder is refused
    before any model loads, and no output is left."""
    teachers_logits(chain, workspace)
    out = call_stage(chain, "finetune.py", "--model", "L1", "--models", "models", "--data",
                     workspace / "prepared", "--out", "o", "--live", "l",
                     "--teacher-logits", "logits/L3")
    assert_one_line_error(out, "logits/L3: L3's logits, but this model learns L2's",
                          "cascade.learns_from")
    assert not (chain / "o").exists() and not (chain / "l").exists()


def test_with_the_teachers_logits_the_assistant_shares_its_own_anyway(workspace):  # noqa: F811
    """An assistant's output does not depend on cascade.logits_from (so switching it reruns only
    the models whose source changes); the student then refuses its predecessor's folder."""
    d = chain_dir(workspace, "from-teacher", "teacher")
    teachers_logits(d, workspace)
    finetune(d, workspace, "L2", "--logits-out", "logits/L2", "--teacher-logits", "logits/L3")
    sources = json.loads((d / "logits/L2/sources.json").read_text())
    assert sources["model"] == "L2" and list(sources["splits"]) == ["train"]
    out = call_stage(d, "finetune.py", "--model", "L1", "--models", "models", "--data",
                     workspace / "prepared", "--out", "o", "--live", "l",
                     "--teacher-logits", "logits/L2")
    assert_one_line_error(out, "logits/L2: L2's logits, but this model learns L3's")


def test_the_plain_baseline_learns_the_labels_alone(workspace, monkeypatch):  # noqa: F811
    """Soft labels, transfer pairs and intermediate terms all on: the plain baseline's loss on a
    batch is the cross-entropy on its labels (its share of the global batch), computed by hand
    from the same weights; no teacher's logits, no teacher, no term logged; and it refuses a
    folder of logits."""
    import torch
    import torch.nn.functional as F

    d = chain_dir(workspace, "plain", "teacher")
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["finetune"]["transfer"]["weight"] = 1.0
    params["finetune"]["intermediate"]["objectives"] = [
        {"loss": "hidden_mse", "map": "uniform", "weight": 1.0}]
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    teachers_logits(d, workspace)
    seen, forward = [], classify.FinetuneModule.forward

    def spy(self, batch, shares=None):
        loss, logged = forward(self, batch, shares)
        if not seen:
            with torch.no_grad():
                logits = self.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
                ce = F.cross_entropy(logits.float(), batch["labels"], reduction="sum")
            share = 1.0 if shares is None else shares["example"]
            seen.append({"loss": loss.item(), "ce": ce.item() * share / len(batch["labels"]),
                         "logged": logged, "columns": set(batch), "labels": batch["labels"],
                         "teacher": self.teacher, "objective": self.objective})
        return loss, logged

    monkeypatch.setattr(classify.FinetuneModule, "forward", spy)
    stage("finetune.py", d, "--model", "L1-plain", "--encoder", "models/L1", "--data",
          workspace / "prepared", "--out", "out/L1-plain", "--live", "live-L1-plain")
    [first] = seen
    assert first["loss"] == pytest.approx(first["ce"], rel=1e-5)
    assert first["logged"] == {} and "teacher_logits" not in first["columns"]
    assert first["teacher"] is None and first["objective"] is None
    assert (first["labels"] >= 0).all()  # no unlabeled transfer pair
    live = json.loads((d / "live-L1-plain" / "metrics.json").read_text())["train"]
    assert not {"cross_entropy", "soft_label_kl", "transfer_kl"} & set(live)
    out = call_stage(d, "finetune.py", "--model", "L1-plain", "--encoder", "models/L1", "--data",
                     workspace / "prepared", "--out", "o", "--live", "l",
                     "--teacher-logits", "logits/L3")
    assert_one_line_error(out, "--model L1-plain is the plain baseline: it learns the labels alone")
    assert not (d / "o").exists()
