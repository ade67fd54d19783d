import sys

import numpy as np
import pandas as pd
import pytest

from kdcascade import classify, evaluation
from kdcascade.errors import ConfigError


def test_accuracy_per_language_and_unweighted_average():
    langs = ["en"] * 4 + ["de"] * 2
    gold = [0, 1, 2, 0, 1, 2]
    pred = [0, 1, 2, 1, 0, 2]  # en 3/4, de 1/2
    acc = evaluation.accuracy_by_language(langs, gold, pred)
    assert acc == {"en": 75.0, "de": 50.0, "avg": 62.5}  # not 4/6 pooled
    assert list(acc) == ["en", "de", "avg"]


def test_retention_and_confusion():
    assert evaluation.retention({"avg": 50.0}, {"avg": 80.0}) == 62.5
    gold = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 2, 0, 2])
    assert evaluation.confusion(gold, pred) == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_selection_rows():
    dev = pd.DataFrame({"language": ["en", "de", "en", "fr"], "label": [0, 1, 2, 0],
                        "input_ids": [[1, 5], [1, 6], [1, 7], [1, 8]]})
    english = classify.selection_rows(dev, "en")
    assert list(english.column("label")) == [0, 2]
    assert [list(english.token_ids(i)[0]) for i in range(2)] == [[1, 5], [1, 7]]
    assert len(classify.selection_rows(dev, "all")) == 4
    assert list(classify.selection_rows(dev, ["de", "fr"]).column("language")) == ["de", "fr"]
    with pytest.raises(ConfigError, match=r"finetune.select_on='sw': no dev rows for \['sw'\]"):
        classify.selection_rows(dev, "sw")


class StopBeforeTraining(Exception):
    pass


def test_finetune_stage_never_reads_the_test_split(monkeypatch, tmp_path):
    """Run the real stage script up to model loading and record which splits it opens."""
    import runpy

    from conftest import ROOT
    from kdcascade import data

    opened = []

    def read_split(folder, split):
        opened.append(split)
        return data.Rows.from_frame(pd.DataFrame({"language": ["en"], "label": [0],
                                                  "input_ids": [[1]]}))

    def load_classifier(*args):
        raise StopBeforeTraining

    monkeypatch.setattr(data, "read_split", read_split)
    monkeypatch.setattr(classify, "load_classifier", load_classifier)
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["finetune.py", "--model", "L6", "--models", "x", "--data", "y",
                                      "--out", str(tmp_path / "o"), "--live", str(tmp_path / "l")])
    with pytest.raises(StopBeforeTraining):
        runpy.run_path(str(ROOT / "stages" / "finetune.py"), run_name="__main__")
    assert opened == ["train", "dev"]
