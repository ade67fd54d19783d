"""XNLI loading: tiny official-layout files in tmp_path, a fake hub, and the real shared copy when present."""

from pathlib import Path

import datasets
import pandas as pd
import pytest

from kdcascade.errors import ConfigError
from kdcascade.labels import NLI_COLUMNS
from kdcascade.xnli import XNLI_LANGUAGES, load_hub, load_local, subsample

SHARED = Path(__file__).parents[2] / "shared" / "data" / "xnli"

# the official dev/test files carry more columns than we read; these are read by NAME
EVAL_HEADER = ["language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse",
               "sentence1", "sentence2", "promptID", "pairID", "genre"]
# (language, gold_label, sentence1, sentence2): quotes, "NA", "null" and "nan" must come through as text
EVAL_ROWS = [
    ("en", "entailment", 'He said, "Mom, I\'m home."', "He told his mom he'd got home."),
    ("en", "neutral", "NA", 'The "bus" was late.'),
    ("en", "contradiction", "null", "nan"),
    ("de", "neutral", 'Er sagte: "Mama, ich bin da.', "Er rief seine Mutter an."),
    ("de", "contradiction", "Sie kam.", "Sie kam nicht ' an."),
    ("fr", "entailment", "Il a dit « maman ».", "NA"),
]
TRAIN_ROWS = [
    ("A man said \"hi.", "Someone spoke.", "entailment"),
    ("it's 'fine'", "NA", "neutral"),
    ("yes", "no", "contradictory"),
]


def _write(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + end).encode("utf-8"))
    return path


def _eval_line(lang, gold, s1, s2, n=0):
    return "\t".join([lang, gold, f"( {s1} )", f"( {s2} )", s1, s2, str(n), str(n), "fiction"])


def _eval_file(root: Path, split: str, rows=EVAL_ROWS) -> Path:
    lines = ["\t".join(EVAL_HEADER)] + [_eval_line(*r, n=i) for i, r in enumerate(rows)]
    return _write(root / "XNLI-1.0" / f"xnli.{split}.tsv", lines)


def _train_file(root: Path, lang: str, rows=TRAIN_ROWS) -> Path:
    lines = ["premise\thypo\tlabel"] + ["\t".join(r) for r in rows]
    return _write(root / "XNLI-MT-1.0" / "multinli" / f"multinli.train.{lang}.tsv", lines)


@pytest.fixture
def root(tmp_path):
    for split in ("dev", "test"):
        _eval_file(tmp_path, split)
    for lang in ("en", "de"):
        _train_file(tmp_path, lang)
    return tmp_path


def test_local_rows_and_labels(root):
    data = load_local(root, ["en", "de"], train_languages=["en", "de"])
    assert set(data) == {"train", "dev", "test"}
    for frame in data.values():
        assert tuple(frame.columns) == NLI_COLUMNS
        assert frame["label"].dtype == "int64"
        assert all(isinstance(v, str) for col in NLI_COLUMNS[:3] for v in frame[col])
    dev = data["dev"]
    want = [(lang, s1, s2, {"entailment": 0, "neutral": 1, "contradiction": 2}[gold])
            for lang, gold, s1, s2 in EVAL_ROWS if lang in ("en", "de")]
    assert list(dev.itertuples(index=False, name=None)) == want
    assert dev.loc[1, "premise"] == "NA" and dev.loc[2, "hypothesis"] == "nan"
    assert dev.loc[0, "premise"] == 'He said, "Mom, I\'m home."'
    train = data["train"]
    assert train["language"].tolist() == ["en"] * 3 + ["de"] * 3
    assert train["label"].tolist() == [0, 1, 2, 0, 1, 2]  # "contradictory" is contradiction
    assert train.loc[0, "premise"] == 'A man said "hi.' and train.loc[1, "hypothesis"] == "NA"


def test_local_only_requested_splits_and_crlf(tmp_path):
    lines = ["\t".join(EVAL_HEADER)] + [_eval_line(*r) for r in EVAL_ROWS]
    _write(tmp_path / "XNLI-1.0" / "xnli.test.tsv", [line + "\r" for line in lines])
    data = load_local(tmp_path, ["fr"], splits=["test"])  # no dev/train files needed
    assert list(data) == ["test"]
    assert data["test"].values.tolist() == [["fr", "Il a dit « maman ».", "NA", 0]]


def _fake_hub(rows_by_lang: dict, names=("entailment", "neutral", "contradiction")):
    """load_dataset stand-in: an in-memory DatasetDict of the real schema; records its calls."""
    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=list(names))})
    calls = []

    def load_dataset(dataset, lang):
        calls.append((dataset, lang))
        if lang not in rows_by_lang:
            raise ValueError(f"BuilderConfig '{lang}' not found")
        split = lambda rows: datasets.Dataset.from_dict(  # noqa: E731
            {"premise": [r[0] for r in rows], "hypothesis": [r[1] for r in rows],
             "label": [names.index(r[2].replace("contradictory", "contradiction")) for r in rows]},
            features=features)
        rows = rows_by_lang[lang]
        return datasets.DatasetDict({"train": split(rows), "validation": split(rows), "test": split(rows[:1])})

    load_dataset.calls = calls
    return load_dataset


@pytest.mark.parametrize("names", [("entailment", "neutral", "contradiction"),
                                   ("contradiction", "entailment", "neutral")])
def test_hub_matches_local(root, names):
    # the same rows through both sources; the second ClassLabel order proves labels are mapped by name
    de_rows = [(s1, s2, gold) for lang, gold, s1, s2 in EVAL_ROWS if lang == "de"]
    fake = _fake_hub({"en": TRAIN_ROWS, "de": de_rows}, names)
    hub = load_hub(languages=["de"], train_languages=["en"], load_dataset=fake)
    local = load_local(root, ["de"], train_languages=["en"])
    pd.testing.assert_frame_equal(hub["dev"], local["dev"])
    pd.testing.assert_frame_equal(hub["train"], local["train"])
    assert hub["train"]["label"].tolist() == [0, 1, 2]
    assert hub["test"]["label"].tolist() == [1] and len(hub["test"]) == 1
    assert sorted(fake.calls) == [("facebook/xnli", "de"), ("facebook/xnli", "en")]  # one load per language


def test_hub_train_and_eval_languages(root):
    fake = _fake_hub({"en": TRAIN_ROWS, "de": TRAIN_ROWS[:2], "fr": TRAIN_ROWS[:1]})
    data = load_hub("x/xnli", languages=["de", "fr"], train_languages=["en"], splits=["train", "dev"],
                    load_dataset=fake)
    assert list(data) == ["train", "dev"]
    assert data["train"]["language"].tolist() == ["en"] * 3
    assert data["dev"]["language"].tolist() == ["de", "de", "fr"]
    assert tuple(data["dev"].columns) == NLI_COLUMNS and data["dev"]["label"].dtype == "int64"


def test_hub_error_names_dataset_and_language():
    with pytest.raises(ConfigError, match=r"data\.hub: could not load facebook/xnli/'xx': BuilderConfig 'xx'"):
        load_hub(languages=["xx"], splits=["dev"], load_dataset=_fake_hub({}))


def test_hub_label_outside_names():
    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"])})
    ds = datasets.Dataset.from_dict({"premise": ["a"], "hypothesis": ["b"], "label": [-1]}, features=features)
    fake = lambda name, lang: datasets.DatasetDict({"validation": ds})  # noqa: E731
    with pytest.raises(ConfigError, match=r"facebook/xnli/'en' split 'validation': row 0: label id -1"):
        load_hub(languages=["en"], splits=["dev"], load_dataset=fake)


def _header_only(root):
    _write(root / "XNLI-1.0" / "xnli.dev.tsv", ["\t".join(EVAL_HEADER)])
    return "xnli.dev.tsv", "empty split dev"


def _bad_columns(root):
    _write(root / "XNLI-1.0" / "xnli.dev.tsv", ["language\tlabel\tsentence1\tsentence2", "en\tneutral\ta\tb"])
    return "xnli.dev.tsv", "missing column(s) gold_label; found columns language, label, sentence1, sentence2"


def _bad_label(root):
    _eval_file(root, "dev", EVAL_ROWS[:2] + [("en", "maybe", "a", "b")])
    return "xnli.dev.tsv:4", "unknown label 'maybe', expected one of entailment, neutral, contradiction"


def _bad_train_label(root):
    _train_file(root, "en", TRAIN_ROWS + [("a", "b", "-")])
    return "multinli.train.en.tsv:5", "unknown label '-'"


def _short_line(root):
    lines = ["\t".join(EVAL_HEADER), _eval_line(*EVAL_ROWS[0]), "en\tneutral\ta sentence without its tabs"]
    _write(root / "XNLI-1.0" / "xnli.dev.tsv", lines)
    return "xnli.dev.tsv:3", "expected 9 tab-separated fields, got 3"


def _blank_line(root):
    _write(root / "XNLI-MT-1.0" / "multinli" / "multinli.train.en.tsv", ["premise\thypo\tlabel", "a\tb\tneutral", "",
                                                                          "c\td\tneutral"])
    return "multinli.train.en.tsv:3", "expected 3 tab-separated fields, got 1"


def _empty_train(root):
    _write(root / "XNLI-MT-1.0" / "multinli" / "multinli.train.en.tsv", ["premise\thypo\tlabel"])
    return "multinli.train.en.tsv", "empty split train for language en"


def _empty_file(root):
    (root / "XNLI-1.0" / "xnli.test.tsv").write_bytes(b"")
    return "xnli.test.tsv", "file is empty, expected a header row with columns language, gold_label"


def _missing_dev(root):
    (root / "XNLI-1.0" / "xnli.dev.tsv").unlink()
    return "xnli.dev.tsv", "file not found (split dev"


def _missing_train(root):
    (root / "XNLI-MT-1.0" / "multinli" / "multinli.train.en.tsv").unlink()
    return "multinli.train.en.tsv", "file not found (split train, language(s) en need it)"


@pytest.mark.parametrize("corrupt", [_header_only, _bad_columns, _bad_label, _bad_train_label, _short_line,
                                     _blank_line, _empty_train, _empty_file, _missing_dev, _missing_train])
def test_local_bad_input(root, corrupt):
    where, what = corrupt(root)
    with pytest.raises(ConfigError) as err:
        load_local(root, ["en"])
    assert where in str(err.value) and what in str(err.value)


def test_local_unknown_language(root):
    with pytest.raises(ConfigError, match=r"xnli\.dev\.tsv: language\(s\) sw not in the file; it has de, en, fr"):
        load_local(root, ["en", "sw"])


def test_local_missing_root(tmp_path):
    with pytest.raises(ConfigError, match="nowhere: data root directory not found"):
        load_local(tmp_path / "nowhere", ["en"])


@pytest.mark.parametrize("kwargs, message", [
    ({"languages": "en"}, "languages: expected a non-empty list"),
    ({"languages": []}, "languages: expected a non-empty list"),
    ({"languages": ["en", "en"]}, "lists a name twice"),
    ({"languages": ["en"], "splits": ["validation"]}, r"splits: unknown \['validation'\]"),
])
def test_bad_parameters(root, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_local(root, **kwargs)


def _balanced(per_label=30, languages=("en", "de")):
    rows = [(lang, f"p{lang}{i}", f"h{i}", i % 3) for lang in languages for i in range(3 * per_label)]
    return pd.DataFrame(rows, columns=list(NLI_COLUMNS))


def test_subsample_stratified_and_deterministic():
    df = _balanced()
    sample = subsample(df, 12, seed=7)
    assert sample.groupby(["language", "label"]).size().tolist() == [4] * 6
    pd.testing.assert_frame_equal(sample, subsample(df, 12, seed=7))
    assert not sample.index.equals(subsample(df, 12, seed=8).index)
    assert sample.index.is_monotonic_increasing  # original row order kept
    # a language's sample does not depend on the other languages in the frame
    alone = subsample(df[df["language"] == "de"], 12, seed=7)
    pd.testing.assert_frame_equal(alone, sample[sample["language"] == "de"])
    assert subsample(df, 10, seed=0).groupby("language").size().tolist() == [10, 10]


def test_subsample_keeps_all():
    df = _balanced(per_label=2)
    assert subsample(df, None, seed=0) is df
    pd.testing.assert_frame_equal(subsample(df, 1000, seed=0), df)
    with pytest.raises(ConfigError, match="n_per_language: expected a positive integer or None"):
        subsample(df, 0, seed=0)


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared XNLI copy not present")
def test_real_shared_files():
    data = load_local(SHARED, XNLI_LANGUAGES, splits=["train", "dev"])
    dev = data["dev"]
    assert len(dev) == 15 * 2490
    counts = dev.groupby(["language", "label"]).size()
    assert sorted(dev["language"].unique()) == sorted(XNLI_LANGUAGES)
    assert (counts == 830).all() and len(counts) == 45
    assert len(data["train"]) == 8999 and set(data["train"]["label"]) == {0, 1, 2}
