"""Distillation corpora streamed from files and the hub, their budgets and smoothed sampling, and
the memory-mapped split files every later stage reads."""

import datasets
import numpy as np
import pandas as pd
import pytest

from kdcascade import corpora, data, models, sources
from kdcascade.errors import ConfigError


def cfg(**kw):
    base = {"source": "synthetic", "languages": ["en", "de"], "train_languages": ["en"],
            "sizes": {"train": 6, "dev": 6, "test": 6, "distill": 4},
            "distill_corpus": "generated", "distill_smoothing": None}
    return {**base, **kw}


def streamed(d, seed=0) -> pd.DataFrame:
    return pd.DataFrame(list(sources.distill_corpus(d, None, seed).sentences()),
                        columns=["language", "sentence"])


def folder(tmp_path, **lines_per_language):
    for lang, n in lines_per_language.items():
        (tmp_path / f"{lang}.txt").write_text("".join(f"{lang} sentence {i}\n" for i in range(n)),
                                              encoding="utf-8")
    return str(tmp_path)


def test_smoothed_budgets_by_hand():
    sizes = {"en": 900, "sw": 100}
    # a share proportional to size^a of a total of 2 x 50: a=1 by size, a=0 uniform,
    # a=0.5: sqrt(0.9) : sqrt(0.1) = 0.75 : 0.25
    assert corpora.budgets(sizes, 50, 1.0) == {"en": 90, "sw": 10}
    assert corpora.budgets(sizes, 50, 0.0) == {"en": 50, "sw": 50}
    assert corpora.budgets(sizes, 50, 0.5) == {"en": 75, "sw": 25}
    # no total given: the corpus's own size, re-weighted (mBERT's smoothing of Wikipedia)
    assert corpora.budgets(sizes, None, 0.5) == {"en": 750, "sw": 250}
    # without smoothing: the budget per language (a source gives no more than it has)
    assert corpora.budgets(sizes, 200, None) == {"en": 200, "sw": 200}
    assert corpora.taken(200, 100, repeat=False) == 100 and corpora.taken(None, 100, False) == 100
    assert corpora.taken(200, 100, repeat=True) == 200
    with pytest.raises(ConfigError, match=r"distill_smoothing=0.7: needs the size of every "
                                          r"language, unknown for \['en'\]"):
        corpora.budgets({"en": None, "sw": 100}, 50, 0.7)


def test_a_language_asked_for_more_than_it_has_is_repeated():
    picked = corpora.choose(3, 7, np.random.default_rng(0))
    assert len(picked) == 7 and list(picked) == sorted(picked)
    counts = np.bincount(picked, minlength=3)
    assert sorted(counts) == [2, 2, 3]
    assert sorted(corpora.choose(10, 4, np.random.default_rng(0))) == list(
        np.unique(corpora.choose(10, 4, np.random.default_rng(0))))  # distinct below the size


def test_a_folder_corpus_is_sampled_with_smoothed_shares(tmp_path):
    path = folder(tmp_path, en=90, de=10)
    by_size = streamed(cfg(distill_corpus=path, sizes={"distill": 10}, distill_smoothing=1.0))
    assert by_size.language.value_counts().to_dict() == {"en": 18, "de": 2}
    uniform = streamed(cfg(distill_corpus=path, sizes={"distill": 15}, distill_smoothing=0.0))
    assert uniform.language.value_counts().to_dict() == {"en": 15, "de": 15}
    de = uniform[uniform.language == "de"].sentence
    assert de.nunique() == 10  # all of German once, five of it twice
    en = uniform[uniform.language == "en"].sentence
    assert en.is_unique and list(en) == sorted(en, key=lambda s: int(s.split()[-1]))  # file order
    # the same seed draws the same sentences; another seed others
    assert streamed(cfg(distill_corpus=path, sizes={"distill": 5})).equals(
        streamed(cfg(distill_corpus=path, sizes={"distill": 5})))
    assert not streamed(cfg(distill_corpus=path, sizes={"distill": 5})).equals(
        streamed(cfg(distill_corpus=path, sizes={"distill": 5}), seed=1))


def test_bad_corpora_and_budgets_get_one_line_each(tmp_path):
    path = folder(tmp_path, en=3, de=3)
    (tmp_path / "fr.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"fr.txt: no sentences"):
        streamed(cfg(distill_corpus=path, languages=["en", "fr"]))
    with pytest.raises(ConfigError, match=r"es.txt: file not found \(data.languages has es"):
        streamed(cfg(distill_corpus=path, languages=["en", "es"]))
    (tmp_path / "de.txt").write_bytes(b"eins\nzwei\n\xc3\x28\n")
    with pytest.raises(ConfigError, match=r"de.txt:3: not valid UTF-8"):
        streamed(cfg(distill_corpus=path))
    for budget in (0, -3, 1.5, "all", True):
        with pytest.raises(ConfigError, match=rf"data.sizes.distill={budget!r}: expected a "
                                              "positive integer or null"):
            streamed(cfg(distill_corpus=path, sizes={"distill": budget}))
    for exponent in (1.5, -0.1, "mbert"):
        with pytest.raises(ConfigError, match=rf"data.distill_smoothing={exponent!r}: expected "
                                              "an exponent in 0..1"):
            streamed(cfg(distill_corpus=path, distill_smoothing=exponent))


WIKI = {"en": ["Anna has three apples and a dog. The dog is brown!\nSee also",
               "Paris is the capital of France. It is large."],
        "de": ["Der Hund ist braun. Die Katze schläft."]}


@pytest.fixture
def hub(monkeypatch):
    """wikimedia/wikipedia's schema in memory, streamed as `datasets` streams it."""
    asked = []

    def load_dataset(path, name, split, streaming):
        asked.append((path, name, split, streaming))
        lang = name.split(".")[-1]
        if path != "wikimedia/wikipedia" or lang not in WIKI:
            raise FileNotFoundError(f"Couldn't find a dataset config named {name!r}")
        return datasets.Dataset.from_dict({"id": list(range(len(WIKI[lang]))),
                                           "text": WIKI[lang]}).to_iterable_dataset()

    def load_dataset_builder(path, name):
        lang = name.split(".")[-1]
        info = datasets.DatasetInfo(splits=datasets.SplitDict(
            {"train": datasets.SplitInfo("train", num_examples=len(WIKI[lang]))}))
        return type("Builder", (), {"info": info})()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(datasets, "load_dataset_builder", load_dataset_builder)
    return asked


HUB = {"dataset": "wikimedia/wikipedia", "config": "20231101.{language}", "split": "train",
       "field": "text"}


def test_a_hub_corpus_streams_sentences_up_to_the_budget(hub):
    got = streamed(cfg(distill_corpus="hub", distill_hub=HUB, sizes={"distill": 3}))
    en = set(got[got.language == "en"].sentence)
    assert len(en) == 3 and en <= {"Anna has three apples and a dog.", "The dog is brown!",
                                   "Paris is the capital of France.", "It is large."}
    assert set(got[got.language == "de"].sentence) == {"Der Hund ist braun.",
                                                       "Die Katze schläft."}
    assert "See also" not in set(got.sentence)  # a heading, not a sentence
    # smoothed by the documents the hub reports (en 2, de 1), 3 sentences a language on average
    smoothed = streamed(cfg(distill_corpus="hub", distill_hub=HUB, sizes={"distill": 3},
                            distill_smoothing=1.0))
    assert smoothed.language.value_counts().to_dict() == {"en": 4, "de": 2}
    assert {(name, streaming) for _, name, _, streaming in hub} == {
        ("20231101.en", True), ("20231101.de", True)}


def test_a_bad_hub_corpus_is_named_before_anything_is_read(hub):
    with pytest.raises(ConfigError, match=r"data.distill_hub: could not open "
                                          r"wikimedia/wikipedia/20231101.xx: .*config named"):
        sources.distill_corpus(cfg(distill_corpus="hub", distill_hub=HUB,
                                   languages=["en", "xx"]), None, 0)
    with pytest.raises(ConfigError, match=r"could not open nobody/nothing/20231101.en"):
        sources.distill_corpus(cfg(distill_corpus="hub",
                                   distill_hub={**HUB, "dataset": "nobody/nothing"}), None, 0)
    with pytest.raises(ConfigError, match=r"data.distill_hub.field='body': not a field of "
                                          r"wikimedia/wikipedia/20231101.en; it has id, text"):
        sources.distill_corpus(cfg(distill_corpus="hub", distill_hub={**HUB, "field": "body"}),
                               None, 0)
    with pytest.raises(ConfigError, match=r"distill_hub.config='20231101.en': expected a "
                                          r"`\{language\}` placeholder"):
        sources.distill_corpus(cfg(distill_corpus="hub",
                                   distill_hub={**HUB, "config": "20231101.en"}), None, 0)
    with pytest.raises(ConfigError, match=r"data.sizes.distill=null: a smoothed hub corpus "
                                          r"needs a budget"):
        sources.distill_corpus(cfg(distill_corpus="hub", distill_hub=HUB, sizes={"distill": None},
                                   distill_smoothing=0.7), None, 0)


def test_split_files_hold_the_rows_of_the_in_memory_frames(tmp_path, minilm_path):
    tokenizer = models.load_tokenizer(minilm_path)
    pairs = pd.DataFrame({"language": ["en", "de", "en"] * 4,
                          "premise": [f"premise number {i} " * (1 + i) for i in range(12)],
                          "hypothesis": [f"hypo {i}" for i in range(12)],
                          "label": [i % 3 for i in range(12)]})
    frame, truncated = data.tokenize_pairs(tokenizer, pairs, 24)
    old_rows, old_split = data.ROWS_PER_BATCH, tmp_path / "train.arrow"
    try:
        data.ROWS_PER_BATCH = 5  # several record batches: rows found across chunks
        summary = data.write_pairs(old_split, pairs, tokenizer, 24)
    finally:
        data.ROWS_PER_BATCH = old_rows
    rows = data.read_split(tmp_path, "train")
    assert len(rows) == 12 and len(rows.table().column("input_ids").chunks) == 3
    for i in range(12):
        ids, types = rows.token_ids(i)
        assert ids.dtype == np.int32 and list(ids) == list(frame.input_ids[i])
        assert list(types) == list(frame.token_type_ids[i])
    assert list(rows.lengths) == [len(x) for x in frame.input_ids]
    assert list(rows.column("label")) == list(pairs.label)
    assert summary["rows"] == 12 and summary["rows_per_language"] == {"de": 4, "en": 8}
    assert summary["truncation_rate"] == round(truncated / 12, 4) and truncated > 0
    # selections are index arrays: the same rows as the frame's
    german = rows.select(rows.positions_in("language", ["de"]))
    assert [list(german.token_ids(k)[0]) for k in range(4)] == [
        list(x) for x in frame[frame.language == "de"].input_ids]
    both = data.Rows.concat([german.assign(label=np.full(4, -100)),
                             rows.select([0]).assign(label=np.array([7]))])
    assert list(both.column("label")) == [-100] * 4 + [7]
    assert list(both.token_ids(4)[0]) == list(frame.input_ids[0])
    with pytest.raises(ConfigError, match=r"nope.arrow: missing; run the prepare stage"):
        data.read_split(tmp_path, "nope")
    (tmp_path / "bad.arrow").write_text("not arrow")
    with pytest.raises(ConfigError, match=r"bad.arrow: not a prepared split"):
        data.read_split(tmp_path, "bad")


def test_sentences_stream_into_their_file_a_batch_at_a_time(tmp_path, minilm_path):
    tokenizer = models.load_tokenizer(minilm_path)
    pulled = []

    def corpus():
        for i in range(11):
            pulled.append(i)
            yield ("en" if i % 2 else "de"), f"sentence {i} " * (i + 1)

    old = data.ROWS_PER_BATCH
    try:
        data.ROWS_PER_BATCH = 4
        summary = data.write_sentences(tmp_path / "distill.arrow", corpus(), tokenizer, 16)
    finally:
        data.ROWS_PER_BATCH = old
    rows = data.read_split(tmp_path, "distill")
    expected = data.tokenize_sentences(tokenizer, [f"sentence {i} " * (i + 1) for i in range(11)],
                                       16)
    assert [list(rows.token_ids(i)[0]) for i in range(11)] == [list(x) for x in
                                                                expected.input_ids]
    assert rows.token_ids(0)[1] is None and pulled == list(range(11))
    # truncation counted exactly: rows with tokens left over, not rows of max_length tokens
    full = [len(tokenizer(f"sentence {i} " * (i + 1))["input_ids"]) for i in range(11)]
    assert summary["truncation_rate"] == round(sum(n > 16 for n in full) / 11, 4)
    # transfer pairs from the distillation split's file: two sentences of one language each
    pairs = sources.transfer_pairs({"transfer_corpus": "distill", "sizes": {"transfer": 2}},
                                   tmp_path / "distill.arrow", 0)
    assert pairs.groupby("language").size().to_dict() == {"de": 2, "en": 2}
    for row in pairs.itertuples():
        assert int(row.premise.split()[1]) % 2 == int(row.hypothesis.split()[1]) % 2 == (
            row.language == "en")
