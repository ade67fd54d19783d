"""Where the NLI pairs and the unlabeled distillation sentences come from, chosen by `data.source`."""

from pathlib import Path

import numpy as np
import pandas as pd

from . import xnli
from .data import SPLITS
from .errors import ConfigError

SOURCES = ("synthetic", "local", "hub")
SPLIT_SEED_OFFSET = {"train": 0, "dev": 1000, "test": 2000, "distill": 3000, "transfer": 4000}


def _size(d: dict, split: str):
    size = d["sizes"].get(split)
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ConfigError(f"data.sizes.{split}={size!r}: expected a positive integer or null (all)")
    return size


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


CORPORA = ("generated", "train", "translated_train")


def distill_sentences(d: dict, train: pd.DataFrame, seed: int,
                      memo: dict | None = None) -> pd.DataFrame:
    """Unlabeled sentences (language, sentence) for distillation.

    data.distill_corpus:
      `generated`: the synthetic source's sentences in every data.languages;
      `train`: premises and hypotheses of the prepared (English) train split;
      `translated_train`: premises and hypotheses of XNLI's machine-translated train set in every
        data.languages (local: XNLI-MT-1.0/multinli/multinli.train.<lang>.tsv, hub: the train
        split of each language), read as plain text: no label is used;
      a folder: one `<lang>.txt` per data.languages, one sentence per line;
      a text file: one sentence per line (language `file`).
    data.sizes.distill: sentences per language (null = all), drawn at random from each language,
    so a multilingual corpus is balanced up to the smallest language's size.
    """
    corpus, n = d["distill_corpus"], _size(d, "distill")
    if corpus == "generated":
        if d["source"] != "synthetic":
            raise ConfigError("data.distill_corpus=generated: only the synthetic source "
                              "generates sentences; use `train`, `translated_train`, a folder "
                              "or a text file")
        if n is None:
            raise ConfigError("data.sizes.distill: the generated corpus needs a size")
        from . import synthetic

        rows = [(lang, s) for lang in d["languages"]
                for s in synthetic.generate_sentences(lang, n, seed + SPLIT_SEED_OFFSET["distill"])]
        return pd.DataFrame(rows, columns=["language", "sentence"])
    if corpus == "train":
        df = _sentences_of(train)
    elif corpus == "translated_train":
        df = _sentences_of(_translated_train(d, "distill_corpus", memo))
    elif isinstance(corpus, str) and Path(corpus).is_dir():
        df = pd.concat([_lines(Path(corpus) / f"{lang}.txt", lang, f"data.languages has {lang}")
                        for lang in d["languages"]], ignore_index=True)
    elif isinstance(corpus, str) and Path(corpus).is_file():
        df = _lines(Path(corpus), "file")
    else:
        raise ConfigError(f"data.distill_corpus={corpus!r}: expected one of {', '.join(CORPORA)}, "
                          "a folder of <language>.txt files or a text file with one sentence "
                          "per line")
    if n is not None:
        df = (df.sample(frac=1.0, random_state=seed).groupby("language", sort=True).head(n)
              .reset_index(drop=True))
    return df


TRANSFER = ("none", "translated_train", "distill")


def transfer_pairs(d: dict, sentences: pd.DataFrame, seed: int,
                   memo: dict | None = None) -> pd.DataFrame:
    """Unlabeled NLI-shaped pairs (language, premise, hypothesis) in the test languages, on which
    a distilled model learns the fine-tuned teacher's predictions (finetune.transfer_weight).

    data.transfer_corpus:
      `none`: no pairs;
      `translated_train`: XNLI's machine-translated train pairs of every data.languages (local or
        hub; the synthetic source generates its own pairs in each language), labels dropped;
      `distill`: two unrelated sentences of the same language from the distillation corpus
        (data.distill_corpus), for sources without translated pairs.
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
        df = _translated_train(d, "transfer_corpus", memo)[["language", "premise", "hypothesis"]]
        if n is not None:
            df = df.sample(frac=1.0, random_state=seed).groupby("language", sort=True).head(n)
        return df.reset_index(drop=True)
    if corpus != "distill":
        raise ConfigError(f"data.transfer_corpus={corpus!r}: expected one of {', '.join(TRANSFER)}")
    rows = []
    rng = np.random.default_rng(seed + SPLIT_SEED_OFFSET["transfer"])
    for lang, group in sentences.groupby("language", sort=True):
        text = group.sentence.to_numpy()
        order = rng.permutation(len(text))
        pairs = len(order) // 2 if n is None else min(n, len(order) // 2)
        rows += [(lang, text[order[2 * i]], text[order[2 * i + 1]]) for i in range(pairs)]
    return pd.DataFrame(rows, columns=["language", "premise", "hypothesis"])


def _sentences_of(pairs: pd.DataFrame) -> pd.DataFrame:
    both = pd.concat([pairs[["language", "premise"]].rename(columns={"premise": "sentence"}),
                      pairs[["language", "hypothesis"]].rename(columns={"hypothesis": "sentence"})])
    return both.drop_duplicates(["language", "sentence"]).reset_index(drop=True)


def _hub_memo(memo: dict | None) -> dict:
    return {} if memo is None else memo.setdefault("hub", {})


def _translated_train(d: dict, param: str, memo: dict | None) -> pd.DataFrame:
    """Labeled pairs of XNLI's translated train set in every data.languages, read once per memo
    (at the paper's size, 15 x 392,702 pairs)."""
    if memo is not None and "translated_train" in memo:
        return memo["translated_train"]
    if d["source"] == "local":
        if not d.get("path"):
            raise ConfigError("data.path: expected the folder holding XNLI-1.0/ and XNLI-MT-1.0/")
        df = xnli.load_local(Path(d["path"]), d["languages"], d["languages"], ("train",))["train"]
    elif d["source"] == "hub":
        df = xnli.load_hub(d["hub_dataset"], d["languages"], d["languages"], ("train",),
                           loaded=_hub_memo(memo))["train"]
    else:
        raise ConfigError(f"data.{param}=translated_train: needs data.source local or hub "
                          "(XNLI's machine-translated train set)")
    if memo is not None:
        memo["translated_train"] = df
    return df


def _lines(path: Path, language: str, why: str = "") -> pd.DataFrame:
    """The non-empty lines of a UTF-8 text file, stripped, each once."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found ({why}; expected one sentence per line)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid UTF-8 ({err.reason})") from None
    lines = list(dict.fromkeys(ln.strip() for ln in text.splitlines() if ln.strip()))
    if not lines:
        raise ConfigError(f"{path}: no sentences (expected one sentence per line)")
    return pd.DataFrame({"language": language, "sentence": lines})
