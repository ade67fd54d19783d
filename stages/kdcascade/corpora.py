"""Unlabeled sentences for general distillation, streamed from where they are kept.

A corpus is one source per language (data.languages). Every source is checked and, where it can
be, counted before anything is tokenized; then `sentences()` streams the chosen sentences, one
language after the other, so a corpus of any size passes through a few MB of memory:

  `generated`         the synthetic source's sentences (exactly data.sizes.distill a language);
  `train`             premises and hypotheses of the prepared (English) train split;
  `translated_train`  premises and hypotheses of XNLI's machine-translated train set (local or
                      hub), read one language at a time, labels unused;
  a folder            one `<lang>.txt` per language, one sentence per line, read line by line:
                      a first pass counts the distinct non-empty lines (keeping an 8-byte hash
                      per line), a second yields the chosen ones;
  a text file         one sentence per line (language `file`);
  `hub`               a text dataset on the Hugging Face hub, one config per language
                      (data.distill_hub: dataset, config with `{language}`, split, field),
                      streamed: each document is split into sentences and nothing but the
                      sentences kept is read; the first ones of the stream, shuffled in a buffer.

How many a language gives (`budgets`): data.sizes.distill sentences (null: all), or with
data.distill_smoothing = a, mBERT/XLM's exponentially smoothed shares: language L gets
total x q_L, q_L proportional to (L's share of the corpus)^a, total = sizes.distill x languages
(null: the corpus's size). A language asked for more than it has is repeated, as mBERT
over-samples small languages. Distinct sentences are drawn at random, in file order.
"""

import re
import zlib
from array import array
from pathlib import Path

import numpy as np

from .errors import ConfigError

CORPORA = ("generated", "train", "translated_train", "hub")
DISTILL_SEED_OFFSET = 3000  # as sources.SPLIT_SEED_OFFSET["distill"]
# documents shuffled in memory while a hub corpus streams (a few MB of text)
HUB_SHUFFLE_BUFFER = 10_000
# a hub document is split after sentence-final punctuation (Latin, CJK, Devanagari, Arabic,
# Urdu) and at line breaks; shorter pieces (headings, list items) are dropped
SENTENCE_END = re.compile(r"(?<=[.!?।؟۔])\s+|(?<=[。！？])|\n+")
MIN_CHARACTERS = 10


def positive_budget(value, param: str):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{param}={value!r}: expected a positive integer or null (all)")
    return value


def check_smoothing(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"data.distill_smoothing={value!r}: expected an exponent in 0..1 "
                          "(mBERT 0.7, XLM 0.5, XLM-R 0.3) or null (a budget per language)")
    return float(value)


def budgets(sizes: dict, per_language: int | None, smoothing: float | None) -> dict:
    """Sentences to take from each language: {language: n, None: all it has}. `sizes`:
    distinct sentences each has (None where unknown: a stream), read only with smoothing."""
    if smoothing is None:
        return dict.fromkeys(sizes, per_language)
    unknown = [lang for lang, size in sizes.items() if size is None]
    if unknown:
        raise ConfigError(f"data.distill_smoothing={smoothing}: needs the size of every "
                          f"language, unknown for {unknown}; use a per-language budget")
    counts = np.array(list(sizes.values()), dtype=np.float64)
    total = int(counts.sum()) if per_language is None else per_language * len(sizes)
    shares = (counts / counts.sum()) ** smoothing
    exact = total * shares / shares.sum()
    # largest remainders: the budgets add up to the total exactly
    quota = np.floor(exact).astype(np.int64)
    quota[np.argsort(-(exact - quota), kind="stable")[:total - int(quota.sum())]] += 1
    return dict(zip(sizes, quota.tolist()))


def choose(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n positions of 0..size-1 in increasing order: distinct ones drawn at random, and every
    position n // size times more where n exceeds size (over-sampling)."""
    whole, rest = divmod(n, size)
    drawn = rng.choice(size, rest, replace=False) if rest else np.zeros(0, np.int64)
    return np.sort(np.concatenate([np.repeat(np.arange(size), whole), drawn]))


def language_rng(seed: int, language: str) -> np.random.Generator:
    # one generator per language: adding a language does not change another's sample
    return np.random.default_rng([seed, DISTILL_SEED_OFFSET, zlib.crc32(language.encode())])


def taken(n: int | None, size: int, repeat: bool) -> int:
    """How many of `size` sentences a budget of n takes: all for None, no more than there are
    unless a smoothed budget over-samples."""
    return size if n is None else n if repeat else min(n, size)


class ListSource:
    """Sentences in memory (generated, or from NLI pairs), each once, in order. `load`: a
    function giving them, called when they are needed, so only one language is held at once."""

    def __init__(self, language: str, load, exact: bool = False):
        self.language, self.load = language, load
        self.exact = exact  # generated: all of them, in their order, whatever the budget

    @property
    def size(self) -> int:
        return len(self._items())

    def _items(self) -> list:
        return list(dict.fromkeys(self.load()))

    def sentences(self, n: int | None, rng, repeat: bool = False):
        items = self._items()
        n = taken(n, len(items), repeat)
        if self.exact or n == len(items):
            yield from items
            return
        for k in choose(len(items), n, rng):
            yield items[k]


class FileSource:
    """The distinct non-empty lines of a UTF-8 text file, stripped, read line by line."""

    def __init__(self, path: Path, language: str, why: str = ""):
        if not path.is_file():
            raise ConfigError(f"{path}: file not found ({why}; expected one sentence per line)"
                              if why else f"{path}: file not found")
        self.path, self.language = path, language
        # Python's str hash is salted per process, which is all dedup needs: both passes run
        # here, and two distinct lines share a 64-bit hash about once in 1e12 pairs
        hashes = array("q", (hash(line) for line in self._lines()))
        if not hashes:
            raise ConfigError(f"{path}: no sentences (expected one sentence per line)")
        _, first = np.unique(np.frombuffer(hashes, dtype=np.int64), return_index=True)
        self.distinct = np.sort(first)  # ordinals (among non-empty lines) kept
        self.size = len(self.distinct)

    def _lines(self):
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise ConfigError(f"{self.path}:{number}: not valid UTF-8 ({err.reason})"
                                      ) from None
                line = line.lstrip("\ufeff").strip() if number == 1 else line.strip()
                if line:
                    yield line

    def sentences(self, n: int | None, rng, repeat: bool = False):
        n = taken(n, self.size, repeat)
        wanted = self.distinct if n == self.size else self.distinct[choose(self.size, n, rng)]
        at = 0
        for ordinal, line in enumerate(self._lines()):
            while at < len(wanted) and wanted[at] == ordinal:
                yield line
                at += 1
            if at == len(wanted):
                return


def split_sentences(text: str):
    for piece in SENTENCE_END.split(text or ""):
        piece = piece.strip()
        if len(piece) >= MIN_CHARACTERS:
            yield piece


class HubSource:
    """A text dataset on the hub, streamed (datasets' `streaming=True`), split into sentences."""

    def __init__(self, hub: dict, language: str, seed: int):
        from datasets import load_dataset  # lazily: other corpora need no `datasets`

        self.language, self.field = language, hub["field"]
        self.dataset, self.config = hub["dataset"], hub["config"].format(language=language)
        self.split, self.name = hub.get("split", "train"), f"{self.dataset}/{self.config}"
        try:
            stream = load_dataset(self.dataset, self.config, split=self.split, streaming=True)
        except Exception as err:  # unknown dataset or config, no network: one line for the stage
            raise ConfigError(f"data.distill_hub: could not open {self.name}: "
                              f"{' '.join(str(err).split())[:300]}") from None
        first = next(iter(stream), None)
        if first is None:
            raise ConfigError(f"data.distill_hub: {self.name} has no documents")
        if self.field not in first:
            raise ConfigError(f"data.distill_hub.field={self.field!r}: not a field of "
                              f"{self.name}; it has {', '.join(first)}")
        self.stream = stream.shuffle(seed=seed, buffer_size=HUB_SHUFFLE_BUFFER)

    @property
    def size(self) -> int:
        """The documents the hub reports for this config and split (read only for smoothing:
        shares of a corpus in documents; its sentences are unknown until streamed whole)."""
        from datasets import load_dataset_builder

        try:
            splits = load_dataset_builder(self.dataset, self.config).info.splits or {}
            size = splits[self.split].num_examples if self.split in splits else None
        except Exception as err:
            raise ConfigError(f"data.distill_smoothing: could not read the size of {self.name} "
                              f"from the hub: {' '.join(str(err).split())[:300]}") from None
        if not size:
            raise ConfigError(f"data.distill_smoothing: the hub reports no size for {self.name}; "
                              "use a per-language budget (data.distill_smoothing: null)")
        return size

    def sentences(self, n: int | None, rng, repeat: bool = False):
        count = 0
        for document in self.stream:
            for sentence in split_sentences(document[self.field]):
                yield sentence
                count += 1
                if count == n:
                    return


class Corpus:
    """The checked sources of every language and what each gives (see the module's doc)."""

    def __init__(self, sources: dict, per_language, smoothing, seed: int):
        self.sources, self.seed, self.repeat = sources, seed, smoothing is not None
        sizes = ({lang: s.size for lang, s in sources.items()} if self.repeat
                 else dict.fromkeys(sources))
        self.budgets = budgets(sizes, per_language, smoothing)

    def sentences(self):
        """(language, sentence) of every sentence taken, language by language."""
        for lang, source in self.sources.items():
            for sentence in source.sentences(self.budgets[lang], language_rng(self.seed, lang),
                                             self.repeat):
                yield lang, sentence


def check_hub(hub) -> dict:
    if not isinstance(hub, dict) or not all(isinstance(hub.get(k), str) and hub.get(k)
                                            for k in ("dataset", "config", "field")):
        raise ConfigError(f"data.distill_hub={hub!r}: expected {{dataset, config, field[, "
                          "split]}}, e.g. {dataset: wikimedia/wikipedia, config: "
                          "'20231101.{language}', field: text}")
    if "{language}" not in hub["config"]:
        raise ConfigError(f"data.distill_hub.config={hub['config']!r}: expected a `{{language}}` "
                          "placeholder (one config per language)")
    return hub
