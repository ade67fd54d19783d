"""The paper preset's real loading code, with only the hub calls replaced by in-memory stand-ins
of the same schema (a 12-layer BERT with mBERT's layout, and facebook/xnli's features)."""

import runpy
import shutil
import sys

import datasets
import pandas as pd
import pytest
import transformers
import yaml

from conftest import ROOT
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

    def load_dataset(path, name, **kwargs):
        asked["datasets"].append((path, name))
        rows = {"premise": [f"{name} premise {i} about 3 apples" for i in range(9)],
                "hypothesis": [f"{name} hypothesis {i}" for i in range(9)],
                "label": [i % 3 for i in range(9)]}
        split = datasets.Dataset.from_dict(rows, features=features)
        return datasets.DatasetDict(train=split, validation=split, test=split)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return asked


def run_stage(monkeypatch, script, *args):
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(ROOT / "stages" / script), run_name="__main__")


def test_paper_preset_runs_its_real_code_against_a_stand_in_hub(fake_hub, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    compose(work / "params.yaml", ["preset=paper", "distill.epochs=1", "finetune.epochs=1",
                                   "finetune.evals_per_epoch=1", "data.sizes.distill=20",
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
    run_stage(monkeypatch, "evaluate.py", "--finetuned", "data/finetuned",
              "--data", "data/prepared", "--out", "eval")

    assert fake_hub["models"] and set(fake_hub["models"]) == {HUB_MODEL}
    # each language once: the splits, the translated train sentences (distill_corpus) and the
    # translated train pairs (transfer_corpus) share what prepare loaded
    assert sorted(name for _, name in fake_hub["datasets"]) == sorted(XNLI_LANGUAGES)
    transfer = pd.read_parquet(work / "data/prepared/transfer.parquet")
    assert sorted(transfer.language.unique()) == sorted(XNLI_LANGUAGES)
    metrics = yaml.safe_load((work / "eval" / "metrics.json").read_text())
    assert list(metrics) == ["L12", "L11", "L10", "L9", "L8", "L7", "L6", "L6-trunc"]
    assert set(metrics["L6"]["accuracy"]) == {*XNLI_LANGUAGES, "avg"}
    layers = {n: yaml.safe_load((work / "data/models" / n / "config.json").read_text())
              ["num_hidden_layers"] for n in metrics}
    assert layers == {n: m["layers"] for n, m in metrics.items()}
    shutil.rmtree(work / "data")
