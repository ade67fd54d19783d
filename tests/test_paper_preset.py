"""The paper preset's real loading code, with only the hub calls replaced by in-memory stand-ins
of the same schema (a 12-layer BERT with mBERT's layout, and facebook/xnli's features)."""

import runpy
import shutil
import sys

import datasets
import pytest
import transformers
import yaml

from conftest import ROOT, read_split_frame
from kdcascade import schedule
from kdcascade.compose import compose
from kdcascade.xnli import XNLI_LANGUAGES

HUB_MODEL = "bert-base-multilingual-cased"


@pytest.fixture
def fake_hub(monkeypatch, tmp_path, minilm_path):
    """mBERT's architecture at toy width, and facebook/xnli's schema; nothing leaves the machine."""
    folder = tmp_path / "hub" / HUB_MODEL
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32,
                                     num_hidden_layers=12, num_attention_heads=2,
                                     intermediate_size=64)
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    asked = {"models": [], "datasets": []}

    def redirect(original):
        def from_pretrained(name, *args, **kwargs):
            if str(name) == HUB_MODEL:
                asked["models"].append(name)
                name = folder
            return original(name, *args, **kwargs)
        return from_pretrained

    for cls in (transformers.AutoModel, transformers.AutoTokenizer):
        monkeypatch.setattr(cls, "from_pretrained", redirect(cls.from_pretrained))

    names = ["entailment", "neutral", "contradiction"]
    features = datasets.Features({"premise": datasets.Value("string"),
                                  "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=names)})

    def load_dataset(path, name, split=None, streaming=False):
        asked["datasets"].append((path, name))
        if path == "wikimedia/wikipedia":  # the general distillation corpus, streamed
            assert streaming and split == "train"
            text = [f"Article {i} of {name} says 3 apples are here. It has a second sentence "
                    f"{i}.\nA heading" for i in range(4)]
            return datasets.Dataset.from_dict({"id": list(range(4)), "text": text}
                                              ).to_iterable_dataset()
        rows = {"premise": [f"{name} premise {i} about 3 apples" for i in range(9)],
                "hypothesis": [f"{name} hypothesis {i}" for i in range(9)],
                "label": [i % 3 for i in range(9)]}
        split = datasets.Dataset.from_dict(rows, features=features)
        return datasets.DatasetDict(train=split, validation=split, test=split)

    def load_dataset_builder(path, name):  # smoothing reads each Wikipedia's size
        size = 1000 if name.endswith(".en") else 100
        info = datasets.DatasetInfo(splits=datasets.SplitDict(
            {"train": datasets.SplitInfo("train", num_examples=size)}))
        return type("Builder", (), {"info": info})()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(datasets, "load_dataset_builder", load_dataset_builder)
    return asked


def run_stage(monkeypatch, script, *args):
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(ROOT / "stages" / script), run_name="__main__")


def test_paper_preset_runs_its_real_code_against_a_stand_in_hub(fake_hub, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    compose(work / "params.yaml", ["preset=paper", "distill.epochs=1", "finetune.epochs=1",
                                   "finetune.evals_per_epoch=1", "data.sizes.distill=4",
                                   "data.sizes.transfer=3"])
    params = yaml.safe_load((work / "params.yaml").read_text())
    monkeypatch.chdir(work)

    run_stage(monkeypatch, "teacher.py", "--out", "data/models/L12",
              "--baseline-out", "data/models/L6-trunc")
    run_stage(monkeypatch, "prepare.py", "--teacher", "data/models/L12", "--out", "data/prepared")
    for name in schedule.steps_of(params):
        run_stage(monkeypatch, "distill.py", "--model", name, "--models", "data/models",
                  "--data", "data/prepared", "--live", f"live/distill/{name}")

    def finetune(name, *args):
        run_stage(monkeypatch, "finetune.py", "--model", name, "--models", "data/models",
                  "--data", "data/prepared", "--out", f"data/finetuned/{name}",
                  "--live", f"live/finetune/{name}", "--logits-out", f"data/logits/{name}", *args)

    finetune("L12")
    for name, source in schedule.learns_from_of(params).items():
        finetune(name, "--teacher-logits", f"data/logits/{source}")
    for name, encoder in params["cascade"]["plain_from"][0].items():  # the plain baseline
        run_stage(monkeypatch, "finetune.py", "--model", name, "--encoder",
                  f"data/models/{encoder}", "--data", "data/prepared",
                  "--out", f"data/finetuned/{name}", "--live", f"live/finetune/{name}")
    run_stage(monkeypatch, "evaluate.py", "--finetuned", "data/finetuned",
              "--data", "data/prepared", "--out", "eval")

    assert fake_hub["models"] and set(fake_hub["models"]) == {HUB_MODEL}
    # each XNLI language once: the splits and the translated train pairs (transfer_corpus)
    # share what prepare loaded; each Wikipedia streamed once for the distillation corpus
    assert sorted(name for path, name in fake_hub["datasets"] if path == "facebook/xnli") == sorted(
        XNLI_LANGUAGES)
    assert sorted(name for path, name in fake_hub["datasets"] if path != "facebook/xnli") == sorted(
        f"20231101.{lang}" for lang in XNLI_LANGUAGES)
    corpus = read_split_frame(work / "data/prepared/distill.arrow")
    counts = corpus.language.value_counts()
    # smoothed at 0.7 over 1000 English and 100 other documents: English gets the most, but
    # less than its 1000/2400 share of the corpus; every sentence a Wikipedia one
    assert counts.idxmax() == "en" and counts["en"] < 0.4 * counts.sum()
    assert set(counts.index) == set(XNLI_LANGUAGES) and corpus.sentence.str.startswith(
        ("Article", "It has")).all()
    transfer = read_split_frame(work / "data/prepared/transfer.arrow")
    assert sorted(transfer.language.unique()) == sorted(XNLI_LANGUAGES)
    metrics = yaml.safe_load((work / "eval" / "metrics.json").read_text())
    assert list(metrics) == ["L12", "L11", "L10", "L9", "L8", "L7", "L6", "L6-trunc",
                            "L6-plain"]
    assert set(metrics["L6"]["accuracy"]) == {*XNLI_LANGUAGES, "avg"}
    # the plain baseline is fine-tuned from the truncated baseline's folder
    encoders = {n: params["cascade"]["plain_from"][0].get(n, n) for n in metrics}
    layers = {n: yaml.safe_load((work / "data/models" / e / "config.json").read_text())
              ["num_hidden_layers"] for n, e in encoders.items()}
    assert layers == {n: m["layers"] for n, m in metrics.items()}
    shutil.rmtree(work / "data")
