"""Where the NLI pairs, the distillation corpus and the transfer pairs come from (`data.source`,
`data.distill_corpus`, `data.transfer_corpus`)."""

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from . import corpora, data, xnli
from .data import SPLITS
from .errors import ConfigError

SOURCES = ("synthetic", "local", "hub")
SPLIT_SEED_OFFSET = {"train": 0, "dev": 1000, "test": 2000, "distill": 3000, "transfer": 4000}


def _size(d: dict, split: str):
    return corpora.positive_budget(d["sizes"].get(split), f"data.sizes.{split}")


def load_nli(d: dict, seed: int, memo: dict | None = None) -> dict[str, pd.DataFrame]:
    """train (in data.train_languages), dev and test (in data.languages), labels 0/1/2.

    `memo`: one dict shared by this and the corpus readers below, so that a stage reads each
    hub language and XNLI's translated train set once, whatever both corpora name.
    """
    for param in ("languages", "train_languages"):  # the same line whatever the source
        xnli.check_names(f"data.{param}", d[param])
    source = d["source"]
    if source == "synthetic":
        from . import synthetic

        out = {}
        for split in SPLITS:
            langs = d["train_languages"] if split == "train" else d["languages"]
            n = _size(d, split)
            if n is None:
                raise ConfigError(f"data.sizes.{split}: the synthetic source needs a size")
            out[split] = pd.concat([synthetic.generate_nli(lang, n, seed + SPLIT_SEED_OFFSET[split])
                                    for lang in langs], ignore_index=True)
        return out
    from_dev = bool(d.get("test_from_dev", False))
    splits = ("train", "dev") if from_dev else SPLITS
    if source == "local":
        if not d.get("path"):
            raise ConfigError("data.path: expected the folder holding XNLI-1.0/ and XNLI-MT-1.0/")
        frames = xnli.load_local(Path(d["path"]), d["languages"], d["train_languages"], splits)
    elif source == "hub":
        frames = xnli.load_hub(d["hub_dataset"], d["languages"], d["train_languages"], splits,
                               loaded=_hub_memo(memo))
    else:
        raise ConfigError(f"data.source={source!r}: expected one of {', '.join(SOURCES)}")
    if from_dev:
        frames["dev"], frames["test"] = halve_dev(frames["dev"])
    return {split: xnli.subsample(df, _size(d, split), seed + SPLIT_SEED_OFFSET[split])
            for split, df in frames.items()}


def halve_dev(dev: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(selection half, evaluation half) of dev, for sources without a test split.

    XNLI's dev rows are parallel across languages (same order), so splitting by position within
    each language keeps every translation of a pair on the same side: nothing leaks.
    """
    position = dev.groupby("language", sort=False).cumcount()
    return (dev[position % 2 == 0].reset_index(drop=True),
            dev[position % 2 == 1].reset_index(drop=True))


def distill_corpus(d: dict, train: pd.DataFrame | None, seed: int,
                   memo: dict | None = None) -> corpora.Corpus:
    """The unlabeled sentences for distillation (data.distill_corpus, see kdcascade.corpora),
    every source checked and counted: nothing is tokenized before the whole corpus is known
    to be readable."""
    corpus = d["distill_corpus"]
    n = corpora.positive_budget(d["sizes"].get("distill"), "data.sizes.distill")
    smoothing = corpora.check_smoothing(d.get("distill_smoothing"))
    languages = d["languages"]
    if corpus == "generated":
        if d["source"] != "synthetic":
            raise ConfigError("data.distill_corpus=generated: only the synthetic source "
                              "generates sentences; use `train`, `translated_train`, `hub`, a "
                              "folder or a text file")
        if n is None:
            raise ConfigError("data.sizes.distill: the generated corpus needs a size")
        from . import synthetic

        made = {lang: corpora.ListSource(lang, partial(
            synthetic.generate_sentences, lang, n, seed + SPLIT_SEED_OFFSET["distill"]),
            exact=True) for lang in languages}
        return corpora.Corpus(made, n, None, seed)
    if corpus == "train":
        made = {lang: corpora.ListSource(lang, partial(_sentences_of, group))
                for lang, group in train.groupby("language", sort=True)}
    elif corpus == "translated_train":
        _check_translated_train(d, "distill_corpus")
        made = {lang: corpora.ListSource(lang, lambda lang=lang: _sentences_of(
            _translated_train(d, "distill_corpus", lang, memo))) for lang in languages}
    elif corpus == "hub":
        hub = corpora.check_hub(d.get("distill_hub"))
        if smoothing is not None and n is None:
            raise ConfigError("data.sizes.distill=null: a smoothed hub corpus needs a budget "
                              "(sentences per language on average); its sizes are documents")
        made = {lang: corpora.HubSource(hub, lang, seed) for lang in languages}
    elif isinstance(corpus, str) and Path(corpus).is_dir():
        folder = Path(corpus)
        for lang in languages:  # every file there before the first is read
            if not (folder / f"{lang}.txt").is_file():
                raise ConfigError(f"{folder / f'{lang}.txt'}: file not found (data.languages "
                                  f"has {lang}; expected one sentence per line)")
        made = {lang: corpora.FileSource(folder / f"{lang}.txt", lang) for lang in languages}
    elif isinstance(corpus, str) and Path(corpus).is_file():
        made = {"file": corpora.FileSource(Path(corpus), "file")}
    else:
        raise ConfigError(f"data.distill_corpus={corpus!r}: expected one of "
                          f"{', '.join(corpora.CORPORA)}, a folder of <language>.txt files or "
                          "a text file with one sentence per line")
    return corpora.Corpus(made, n, smoothing, seed)


TRANSFER = ("none", "translated_train", "distill")


def transfer_pairs(d: dict, distill, seed: int, memo: dict | None = None) -> pd.DataFrame:
    """Unlabeled NLI-shaped pairs (language, premise, hypothesis) in the test languages, on which
    a distilled model learns the fine-tuned teacher's predictions (finetune.transfer_weight).

    data.transfer_corpus:
      `none`: no pairs;
      `translated_train`: XNLI's machine-translated train pairs of every data.languages (local or
        hub; the synthetic source generates its own pairs in each language), labels dropped;
      `distill`: two unrelated sentences of the same language from the prepared distillation
        split (`distill`: its file, opened only here, or its data.Rows; only the paired
        sentences are read).
    data.sizes.transfer: pairs per language (null = all).
    """
    corpus, n = d.get("transfer_corpus", "none"), _size(d, "transfer")
    if corpus == "none":
        return pd.DataFrame({"language": [], "premise": [], "hypothesis": []}, dtype=str)
    if corpus == "translated_train" and d["source"] == "synthetic":
        if n is None:
            raise ConfigError("data.sizes.transfer: the synthetic source needs a size")
        from . import synthetic

        return pd.concat([synthetic.generate_nli(lang, n, seed + SPLIT_SEED_OFFSET["transfer"])
                          for lang in d["languages"]], ignore_index=True
                         )[["language", "premise", "hypothesis"]]
    if corpus == "translated_train":
        _check_translated_train(d, "transfer_corpus")
        parts = []
        for lang in d["languages"]:  # one language in memory at a time
            df = _translated_train(d, "transfer_corpus", lang, memo)
            parts.append(df[["language", "premise", "hypothesis"]] if n is None else
                         df.sample(n=min(n, len(df)), random_state=seed)[
                             ["language", "premise", "hypothesis"]])
        return pd.concat(parts, ignore_index=True)
    if corpus != "distill":
        raise ConfigError(f"data.transfer_corpus={corpus!r}: expected one of {', '.join(TRANSFER)}")
    rng = np.random.default_rng(seed + SPLIT_SEED_OFFSET["transfer"])
    distill = distill if isinstance(distill, data.Rows) else data.Rows.open(distill)
    table = distill.table()
    text = table.column("sentence")
    parts = []
    for lang in sorted(table.column("language").unique().to_pylist()):
        rows = distill.positions_in("language", [lang])
        order = rows[rng.permutation(len(rows))]
        pairs = len(order) // 2 if n is None else min(n, len(order) // 2)
        parts.append(pd.DataFrame({"language": lang,
                                   "premise": text.take(order[0:2 * pairs:2]).to_pylist(),
                                   "hypothesis": text.take(order[1:2 * pairs:2]).to_pylist()}))
    return (pd.concat(parts, ignore_index=True) if parts else
            pd.DataFrame(columns=["language", "premise", "hypothesis"]))


def _sentences_of(pairs: pd.DataFrame) -> list[str]:
    """Premises then hypotheses of some pairs, each sentence once."""
    return list(dict.fromkeys([*pairs.premise, *pairs.hypothesis]))


def _hub_memo(memo: dict | None) -> dict:
    return {} if memo is None else memo.setdefault("hub", {})


def _check_translated_train(d: dict, param: str) -> None:
    """Every language's translated train set is there (local), before any is read."""
    if d["source"] == "local" and d.get("path"):
        for lang in d["languages"]:
            path = xnli.train_file(Path(d["path"]), lang)
            if not path.is_file():
                raise ConfigError(f"{path}: file not found (data.{param}=translated_train, "
                                  f"language {lang} needs it)")


def _translated_train(d: dict, param: str, language: str, memo: dict | None) -> pd.DataFrame:
    """Labeled pairs of XNLI's translated train set in one language (hub languages are loaded
    once per memo, memory-mapped by `datasets`)."""
    if d["source"] == "local":
        if not d.get("path"):
            raise ConfigError("data.path: expected the folder holding XNLI-1.0/ and XNLI-MT-1.0/")
        return xnli.load_local(Path(d["path"]), [language], [language], ("train",))["train"]
    if d["source"] == "hub":
        return xnli.load_hub(d["hub_dataset"], [language], [language], ("train",),
                             loaded=_hub_memo(memo))["train"]
    raise ConfigError(f"data.{param}=translated_train: needs data.source local or hub "
                      "(XNLI's machine-translated train set)")
