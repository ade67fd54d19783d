"""XNLI splits from the unpacked official archives or the Hugging Face hub, as NLI_COLUMNS frames.

Both sources give {"train"|"dev"|"test": DataFrame(language, premise, hypothesis, label)} with
labels normalised to LABEL_IDS, so the rest of the pipeline never knows where the data came from.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from kdcascade.errors import ConfigError
from kdcascade.labels import LABEL_IDS, LABELS, NLI_COLUMNS

XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
SPLITS = ("train", "dev", "test")
# the machine-translated train files say "contradictory" where XNLI says "contradiction"
_LABEL_NAMES = {**LABEL_IDS, "contradictory": LABEL_IDS["contradiction"]}
_EXPECTED_LABELS = ", ".join([*LABELS, "contradictory"])
_EVAL_COLUMNS = ("language", "gold_label", "sentence1", "sentence2")
_TRAIN_COLUMNS = ("premise", "hypo", "label")
_HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def check_names(param: str, values: Sequence[str], allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    # a bare string would silently be iterated as characters ("en" -> "e", "n")
    if isinstance(values, str) or not values or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{param}: expected a non-empty list of names, got {values!r}")
    values = tuple(values)
    if len(set(values)) != len(values):
        raise ConfigError(f"{param}: {list(values)} lists a name twice")
    if allowed is not None and set(values) - set(allowed):
        raise ConfigError(f"{param}: unknown {sorted(set(values) - set(allowed))}, expected some of {list(allowed)}")
    return values


def _frame(language: list[str], premise: list[str], hypothesis: list[str], label) -> pd.DataFrame:
    text = {"language": language, "premise": premise, "hypothesis": hypothesis}
    frame = pd.DataFrame({name: pd.Series(values, dtype=str) for name, values in text.items()})
    frame["label"] = np.asarray(label, dtype=np.int64)
    return frame[list(NLI_COLUMNS)]


def _read_tsv(path: Path, columns: Sequence[str]) -> list[tuple[int, list[str]]]:
    """(1-based line number, [fields named by `columns`]) for every data line of an unquoted TSV."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from None
    # split on "\n" only: the sentences are unquoted and may hold quotes, "NA", "\r" or U+2028
    body = text.rstrip("\r\n")
    lines = [line.removesuffix("\r") for line in body.split("\n")] if body else []
    if not lines:
        raise ConfigError(f"{path}: file is empty, expected a header row with columns {', '.join(columns)}")
    header = lines[0].split("\t")
    missing = [c for c in columns if c not in header]
    if missing:
        raise ConfigError(
            f"{path}: missing column(s) {', '.join(missing)}; found columns {', '.join(header)}; "
            f"expected {', '.join(columns)}"
        )
    where = [header.index(c) for c in columns]
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise ConfigError(
                f"{path}:{number}: malformed line, expected {len(header)} tab-separated fields, got {len(fields)}"
            )
        rows.append((number, [fields[i] for i in where]))
    # every data line must become a row: count them again from the raw bytes
    expected = raw.rstrip(b"\r\n").count(b"\n")
    if len(rows) != expected:
        raise ConfigError(f"{path}: parsed {len(rows)} rows but the file has {expected} data lines")
    return rows


def _label(path: Path, number: int, name: str) -> int:
    try:
        return _LABEL_NAMES[name]
    except KeyError:
        raise ConfigError(f"{path}:{number}: unknown label {name!r}, expected one of {_EXPECTED_LABELS}") from None


def _local_eval(path: Path, split: str, languages: tuple[str, ...]) -> pd.DataFrame:
    rows = _read_tsv(path, _EVAL_COLUMNS)
    if not rows:
        raise ConfigError(f"{path}: empty split {split}: no data rows for language(s) {', '.join(languages)}")
    labels = [_label(path, n, gold) for n, (_, gold, _, _) in rows]  # every row must load, wanted or not
    present = sorted({lang for _, (lang, *_) in rows})
    absent = [lang for lang in languages if lang not in present]
    if absent:
        raise ConfigError(f"{path}: language(s) {', '.join(absent)} not in the file; it has {', '.join(present)}")
    kept = [(fields, label) for (_, fields), label in zip(rows, labels) if fields[0] in languages]
    return _frame(*([f[i] for f, _ in kept] for i in (0, 2, 3)), [label for _, label in kept])


def _local_train(path: Path, language: str) -> pd.DataFrame:
    rows = _read_tsv(path, _TRAIN_COLUMNS)
    if not rows:
        raise ConfigError(f"{path}: empty split train for language {language}: no data rows")
    labels = [_label(path, n, label) for n, (_, _, label) in rows]
    return _frame([language] * len(rows), [f[0] for _, f in rows], [f[1] for _, f in rows], labels)


def train_file(root: Path, language: str) -> Path:
    """XNLI-MT's machine-translated MultiNLI train set of one language."""
    return Path(root) / "XNLI-MT-1.0" / "multinli" / f"multinli.train.{language}.tsv"


def load_local(
    root: str | Path,
    languages: Sequence[str],
    train_languages: Sequence[str] = ("en",),
    splits: Sequence[str] = SPLITS,
) -> dict[str, pd.DataFrame]:
    """Read root/XNLI-1.0/xnli.{dev,test}.tsv and root/XNLI-MT-1.0/multinli/multinli.train.{lang}.tsv."""
    languages, train_languages = check_names("languages", languages), check_names("train_languages", train_languages)
    splits = check_names("splits", splits, SPLITS)
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: data root directory not found (expected unpacked XNLI-1.0 and XNLI-MT-1.0)")
    paths = {
        split: [(lang, train_file(root, lang)) for lang in train_languages]
        if split == "train"
        else [(", ".join(languages), root / "XNLI-1.0" / f"xnli.{split}.tsv")]
        for split in splits
    }
    # check every file exists before parsing any: a missing one should not cost a long read first
    for split, files in paths.items():
        for lang, path in files:
            if not path.is_file():
                raise ConfigError(f"{path}: file not found (split {split}, language(s) {lang} need it)")
    out = {}
    for split, files in paths.items():
        if split == "train":
            out[split] = pd.concat([_local_train(path, lang) for lang, path in files], ignore_index=True)
        else:
            out[split] = _local_eval(files[0][1], split, languages)
    return out


def _hub_frame(dd, where: str, language: str, split: str) -> pd.DataFrame:
    name = _HUB_SPLITS[split]
    if name not in dd:
        raise ConfigError(f"{where}: no split {name!r} (our {split}); it has {', '.join(dd)}")
    ds, where = dd[name], f"{where} split {name!r}"
    missing = [c for c in ("premise", "hypothesis", "label") if c not in ds.column_names]
    if missing:
        raise ConfigError(f"{where}: missing column(s) {', '.join(missing)}; found {', '.join(ds.column_names)}")
    names = getattr(ds.features["label"], "names", None)
    if names is None:
        raise ConfigError(f"{where}: label feature is {ds.features['label']}, expected a ClassLabel with names")
    unknown = [n for n in names if n not in _LABEL_NAMES]
    if unknown:
        raise ConfigError(f"{where}: unknown label name(s) {', '.join(unknown)}, expected {_EXPECTED_LABELS}")
    # map by NAME: a source whose ClassLabel order differs from ours is still normalised correctly
    lookup = np.array([_LABEL_NAMES[n] for n in names], dtype=np.int64)
    table = ds.select_columns(["premise", "hypothesis", "label"]).to_pandas()
    if table.empty:
        raise ConfigError(f"{where}: empty split")
    ids = table["label"].to_numpy()
    bad = np.flatnonzero((ids < 0) | (ids >= len(names)))
    if bad.size:  # e.g. -1, the hub's "no label"
        raise ConfigError(f"{where}: row {bad[0]}: label id {ids[bad[0]]} is not one of the names {names}")
    if table[["premise", "hypothesis"]].isna().any().any():
        raise ConfigError(f"{where}: missing premise or hypothesis text")
    return _frame([language] * len(table), table["premise"].tolist(), table["hypothesis"].tolist(), lookup[ids])


def load_hub(
    dataset: str = "facebook/xnli",
    languages: Sequence[str] = XNLI_LANGUAGES,
    train_languages: Sequence[str] = ("en",),
    splits: Sequence[str] = SPLITS,
    load_dataset: Callable | None = None,
    loaded: dict | None = None,
) -> dict[str, pd.DataFrame]:
    """One `load_dataset(dataset, lang)` per language; train from train_languages, dev/test from languages.

    `loaded` (language -> DatasetDict) lets several calls share the languages already loaded.
    """
    languages, train_languages = check_names("languages", languages), check_names("train_languages", train_languages)
    splits = check_names("splits", splits, SPLITS)
    if load_dataset is None:
        from datasets import load_dataset  # lazily: the local source must work without `datasets`
    loaded = {} if loaded is None else loaded

    def get(lang: str):
        if lang not in loaded:
            try:
                loaded[lang] = load_dataset(dataset, lang)
            except Exception as e:  # no network, unknown config, ...: one clear line for the stage
                raise ConfigError(f"data.hub: could not load {dataset}/{lang!r}: {e}") from e
        return loaded[lang]

    return {
        split: pd.concat(
            [
                _hub_frame(get(lang), f"data.hub: {dataset}/{lang!r}", lang, split)
                for lang in (train_languages if split == "train" else languages)
            ],
            ignore_index=True,
        )
        for split in splits
    }


def subsample(df: pd.DataFrame, n_per_language: int | None, seed: int) -> pd.DataFrame:
    """At most n rows per language, spread over its labels in proportion, in the original row order.

    None, or n at least a language's size, keeps all of that language.
    """
    if n_per_language is None:
        return df
    if isinstance(n_per_language, bool) or not isinstance(n_per_language, (int, np.integer)) or n_per_language < 1:
        raise ConfigError(f"n_per_language: expected a positive integer or None, got {n_per_language!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    missing = [c for c in ("language", "label") if c not in df.columns]
    if missing:
        raise ConfigError(f"subsample: missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns))}")
    by_language: dict[str, list] = {}
    for (language, label), positions in df.groupby(["language", "label"], sort=True, dropna=False).indices.items():
        by_language.setdefault(language, []).append((label, positions))
    keep = []
    for language, strata in by_language.items():
        sizes = np.array([len(p) for _, p in strata])
        if sizes.sum() <= n_per_language:
            keep.extend(p for _, p in strata)
            continue
        # largest-remainder quotas: proportional, summing to exactly n, equal when labels are balanced
        exact = n_per_language * sizes / sizes.sum()
        quota = np.floor(exact).astype(int)
        quota[np.argsort(-(exact - quota), kind="stable")[: n_per_language - quota.sum()]] += 1
        for (label, positions), q in zip(strata, quota):
            # one generator per stratum: adding a language does not change another's sample
            rng = np.random.default_rng([seed, zlib.crc32(str(language).encode()), int(label)])
            keep.append(rng.choice(positions, size=q, replace=False))
    return df.iloc[np.sort(np.concatenate(keep))] if keep else df
