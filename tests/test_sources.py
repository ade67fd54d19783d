import pandas as pd
import pytest

from kdcascade import data, sources
from kdcascade.errors import ConfigError


def cfg(**kw):
    base = {"source": "synthetic", "languages": ["en", "de"], "train_languages": ["en"],
            "sizes": {"train": 6, "dev": 6, "test": 6, "distill": 4}, "distill_corpus": "generated"}
    return {**base, **kw}


def sentences(d, train, seed, memo=None) -> pd.DataFrame:
    """The distillation corpus as the prepare stage streams it, as a frame."""
    return pd.DataFrame(list(sources.distill_corpus(d, train, seed, memo).sentences()),
                        columns=["language", "sentence"])


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
    df = sentences(cfg(distill_corpus="train",
                                       sizes={"distill": None}), train, 0)
    assert sorted(df.sentence) == ["A b.", "C d.", "E f."]  # duplicates counted once
    path = tmp_path / "corpus.txt"
    path.write_text("first line\n\n  second line  \n", encoding="utf-8")
    df = sentences(cfg(distill_corpus=str(path), sizes={"distill": None}), train, 0)
    assert list(df.sentence) == ["first line", "second line"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ConfigError, match="empty.txt: no sentences"):
        sentences(cfg(distill_corpus=str(tmp_path / "empty.txt"),
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


def test_a_folder_corpus_is_balanced_over_the_listed_languages(tmp_path):
    (tmp_path / "en.txt").write_text("one\ntwo\nthree\nfour\ntwo\n", encoding="utf-8")
    (tmp_path / "de.txt").write_text("eins\n\nzwei\n", encoding="utf-8")
    (tmp_path / "fr.txt").write_text("un\n", encoding="utf-8")  # not listed: not read
    df = sentences(cfg(distill_corpus=str(tmp_path), sizes={"distill": 2}),
                                   None, 0)
    counts = df.language.value_counts().to_dict()
    assert counts == {"en": 2, "de": 2}
    assert set(df[df.language == "de"].sentence) == {"eins", "zwei"}
    assert set(df[df.language == "en"].sentence) <= {"one", "two", "three", "four"}
    # all sentences of every language, each once
    df = sentences(cfg(distill_corpus=str(tmp_path), sizes={"distill": None}),
                                   None, 0)
    assert df.language.value_counts().to_dict() == {"en": 4, "de": 2}
    with pytest.raises(ConfigError, match=r"es.txt: file not found \(data.languages has es"):
        sentences(cfg(distill_corpus=str(tmp_path), languages=["en", "es"]),
                                  None, 0)
    (tmp_path / "de.txt").write_bytes("eins\nzwei\n".encode() + b"\xff\xfe\n")
    with pytest.raises(ConfigError, match="de.txt:3: not valid UTF-8"):
        sentences(cfg(distill_corpus=str(tmp_path)), None, 0)


def test_translated_train_reads_every_language_without_labels(tmp_path):
    from test_xnli import _train_file

    _train_file(tmp_path, "en", [("A dog runs.", "An animal moves.", "entailment")])
    _train_file(tmp_path, "de", [("Ein Hund rennt.", "Ein Tier bewegt sich.", "neutral"),
                                 ("Ein Hund rennt.", "Keiner rennt.", "contradictory")])
    d = cfg(source="local", path=str(tmp_path), distill_corpus="translated_train",
            sizes={"distill": None})
    df = sentences(d, None, 0)
    assert sorted(df[df.language == "de"].sentence) == ["Ein Hund rennt.", "Ein Tier bewegt sich.",
                                                        "Keiner rennt."]
    assert sorted(df[df.language == "en"].sentence) == ["A dog runs.", "An animal moves."]
    assert list(df.columns) == ["language", "sentence"]
    with pytest.raises(ConfigError, match="multinli.train.fr.tsv: file not found"):
        sentences({**d, "languages": ["en", "fr"]}, None, 0)
    with pytest.raises(ConfigError, match="translated_train: needs data.source local or hub"):
        sentences(cfg(distill_corpus="translated_train"), None, 0)


def test_the_translated_train_set_is_read_one_language_at_a_time(tmp_path, monkeypatch):
    from test_xnli import _train_file

    from kdcascade import xnli

    _train_file(tmp_path, "en", [("A dog runs.", "An animal moves.", "entailment")])
    _train_file(tmp_path, "de", [("Ein Hund rennt.", "Keiner rennt.", "contradictory")])
    reads = []
    real = xnli.load_local
    monkeypatch.setattr(xnli, "load_local", lambda *a: reads.append(a[1]) or real(*a))
    d = cfg(source="local", path=str(tmp_path), distill_corpus="translated_train",
            transfer_corpus="translated_train", sizes={"distill": None, "transfer": None})
    assert len(sentences(d, None, 0)) == 4 and len(sources.transfer_pairs(d, None, 0)) == 2
    # memory holds one language's 392,702 pairs at a time, not the 15 languages' 5.9M
    assert reads == [["en"], ["de"], ["en"], ["de"]]


def test_an_unknown_corpus_names_the_choices():
    with pytest.raises(ConfigError, match="data.distill_corpus='wiki': expected one of generated, "
                                          "train, translated_train, hub, a folder"):
        sentences(cfg(distill_corpus="wiki"), None, 0)


def test_transfer_pairs_translated_or_from_the_distillation_sentences(tmp_path):
    from test_xnli import _train_file

    assert len(sources.transfer_pairs(cfg(), None, 0)) == 0  # transfer_corpus absent = none
    _train_file(tmp_path, "en", [("A dog runs.", "An animal moves.", "entailment")])
    _train_file(tmp_path, "de", [("Ein Hund rennt.", "Ein Tier bewegt sich.", "neutral"),
                                 ("Ein Hund rennt.", "Keiner rennt.", "contradictory")])
    d = cfg(source="local", path=str(tmp_path), transfer_corpus="translated_train",
            sizes={"transfer": None})
    df = sources.transfer_pairs(d, None, 0)
    assert list(df.columns) == ["language", "premise", "hypothesis"]  # no label
    assert sorted(df[df.language == "de"].hypothesis) == ["Ein Tier bewegt sich.", "Keiner rennt."]
    assert len(sources.transfer_pairs({**d, "sizes": {"transfer": 1}}, None, 0)) == 2

    corpus = pd.DataFrame({"language": ["de"] * 5 + ["en"] * 2,
                           "sentence": [f"s{i}" for i in range(7)], "input_ids": [[1]] * 7})
    distill = data.Rows.from_frame(corpus)
    d = cfg(transfer_corpus="distill", sizes={"transfer": None})
    pairs = sources.transfer_pairs(d, distill, 0)
    assert pairs.groupby("language").size().to_dict() == {"de": 2, "en": 1}
    for row in pairs.itertuples():  # two different sentences of the pair's own language
        own = set(corpus[corpus.language == row.language].sentence)
        assert row.premise in own and row.hypothesis in own and row.premise != row.hypothesis
    assert len(sources.transfer_pairs({**d, "sizes": {"transfer": 1}}, distill, 0)) == 2

    made = sources.transfer_pairs(cfg(transfer_corpus="translated_train",
                                      sizes={"transfer": 3}), None, 0)
    assert made.groupby("language").size().to_dict() == {"de": 3, "en": 3}
    assert "label" not in made and made.premise.str.len().min() > 0
    with pytest.raises(ConfigError, match="data.transfer_corpus=translated_train: needs data.source"):
        sources.transfer_pairs(cfg(source="nope", transfer_corpus="translated_train"), None, 0)
    with pytest.raises(ConfigError, match="data.transfer_corpus='wiki': expected one of none, "
                                          "translated_train, distill"):
        sources.transfer_pairs(cfg(transfer_corpus="wiki"), None, 0)
    with pytest.raises(ConfigError, match=r"data.sizes.transfer=0: expected a positive integer"):
        sources.transfer_pairs(cfg(transfer_corpus="distill", sizes={"transfer": 0}), distill, 0)
