import pandas as pd
import pytest

from kdcascade import sources
from kdcascade.errors import ConfigError


def cfg(**kw):
    base = {"source": "synthetic", "languages": ["en", "de"], "train_languages": ["en"],
            "sizes": {"train": 6, "dev": 6, "test": 6, "distill": 4}, "distill_corpus": "generated"}
    return {**base, **kw}


def test_synthetic_splits_are_english_train_and_multilingual_dev_test():
    splits = sources.load_nli(cfg(), seed=0)
    assert set(splits["train"].language) == {"en"}
    assert set(splits["dev"].language) == set(splits["test"].language) == {"en", "de"}
    # different seeds per split: no test pair is a training pair
    train = set(zip(splits["train"].premise, splits["train"].hypothesis))
    en_test = splits["test"][splits["test"].language == "en"]
    assert not train & set(zip(en_test.premise, en_test.hypothesis))


def test_distillation_corpus_from_train_and_from_a_file(tmp_path):
    train = pd.DataFrame({"language": ["en", "en"], "premise": ["A b.", "C d."],
                          "hypothesis": ["A b.", "E f."], "label": [0, 1]})
    df = sources.distill_sentences(cfg(distill_corpus="train",
                                       sizes={"distill": None}), train, 0)
    assert sorted(df.sentence) == ["A b.", "C d.", "E f."]  # duplicates counted once
    path = tmp_path / "corpus.txt"
    path.write_text("first line\n\n  second line  \n", encoding="utf-8")
    df = sources.distill_sentences(cfg(distill_corpus=str(path), sizes={"distill": None}), train, 0)
    assert list(df.sentence) == ["first line", "second line"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ConfigError, match="empty.txt: no sentences"):
        sources.distill_sentences(cfg(distill_corpus=str(tmp_path / "empty.txt"),
                                      sizes={"distill": None}), train, 0)


def test_halving_dev_keeps_translations_on_one_side():
    dev = pd.DataFrame({"language": ["en"] * 4 + ["de"] * 4,
                        "premise": [f"p{i}" for i in range(4)] * 2,
                        "hypothesis": ["h"] * 8, "label": [0, 1, 2, 0] * 2})
    keep, held_out = sources.halve_dev(dev)
    assert list(keep.premise) == ["p0", "p2", "p0", "p2"]
    assert list(held_out.premise) == ["p1", "p3", "p1", "p3"]


def test_unknown_source_and_bad_sizes():
    with pytest.raises(ConfigError, match="data.source='ftp'"):
        sources.load_nli(cfg(source="ftp"), 0)
    with pytest.raises(ConfigError, match=r"data.sizes.train=-1"):
        sources.load_nli(cfg(sizes={"train": -1, "dev": 6, "test": 6, "distill": 4}), 0)
