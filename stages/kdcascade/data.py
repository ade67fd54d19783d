"""Prepared splits on disk, read a row at a time, and batches padded dynamically.

A prepared split is one Arrow IPC stream file, `<split>.arrow`: the language and text of each
row, token ids as list<int32> (a 119k or 250k vocabulary overflows uint16), token types as
list<int8>, labels as int64. It is written a record batch at a time, so preparing never holds a
whole corpus. A training process holds a lengths array and a per-row index of where each row's
ids lie in the file (Rows: 12 bytes a sentence, 20 a pair), and reads a batch's rows when it
runs: the file itself stays in the page cache, one copy for every process on the machine, and is
never mapped into one. pyarrow, pandas (via pyarrow) and `datasets.Dataset.from_file` open the
same file.
"""

import contextlib
import copy
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .errors import ConfigError
from .labels import LABELS, NLI_COLUMNS

SPLITS = ("train", "dev", "test")
SUFFIX = ".arrow"
# rows tokenized and written at a time: what prepare holds of a corpus, whatever its size
ROWS_PER_BATCH = 8192

IDS = pa.list_(pa.int32())
TYPES = pa.list_(pa.int8())
PAIR_FIELDS = [pa.field("language", pa.string()), pa.field("premise", pa.string()),
               pa.field("hypothesis", pa.string())]
SENTENCE_SCHEMA = pa.schema([pa.field("language", pa.string()), pa.field("sentence", pa.string()),
                             pa.field("input_ids", IDS)])


def pair_schema(labeled: bool) -> pa.Schema:
    return pa.schema([*PAIR_FIELDS, *([pa.field("label", pa.int64())] if labeled else []),
                      pa.field("input_ids", IDS), pa.field("token_type_ids", TYPES)])


def split_path(folder, split: str) -> Path:
    return Path(folder) / f"{split}{SUFFIX}"


def check_max_length(max_length, positions: int, specials: int) -> int:
    """data.max_length against the teacher: more than the special tokens its tokenizer adds to a
    pair (else rows are left untruncated or empty), no more than its position embeddings."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ConfigError(f"data.max_length={max_length!r}: expected a positive integer")
    if max_length <= specials:
        raise ConfigError(f"data.max_length={max_length}: expected more than the {specials} "
                          "special tokens the teacher's tokenizer adds to a pair")
    if max_length > positions:
        raise ConfigError(f"data.max_length={max_length}: expected at most {positions}, the "
                          "teacher's max_position_embeddings")
    return max_length


def check_fast(tokenizer) -> None:
    """Truncation is counted from the encodings a fast (Rust) tokenizer returns, in one pass."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"{getattr(tokenizer, 'name_or_path', 'the teacher')}: its tokenizer is "
                          "not a fast (Rust) tokenizer; expected one (AutoTokenizer's default)")


def _lists(encoded: list, value_type) -> pa.ListArray:
    return pa.array(encoded, type=pa.list_(value_type))


def _truncated(enc) -> int:
    # a row is truncated when the tokenizer had tokens left over (exact, unlike its length)
    return sum(bool(e.overflowing) for e in enc.encodings)


def encode_pairs(tokenizer, premises: list, hypotheses: list, max_length: int):
    """(input_ids, token_type_ids, truncated rows) of NLI pairs, truncated the same way
    everywhere: longest side first."""
    enc = tokenizer(premises, hypotheses, truncation="longest_first", max_length=max_length,
                    return_token_type_ids=True, return_attention_mask=False)
    return (_lists(enc["input_ids"], pa.int32()), _lists(enc["token_type_ids"], pa.int8()),
            _truncated(enc))


def encode_sentences(tokenizer, sentences: list, max_length: int):
    """(input_ids, truncated rows) of single sentences."""
    enc = tokenizer(sentences, truncation=True, max_length=max_length,
                    return_attention_mask=False, return_token_type_ids=False)
    return _lists(enc["input_ids"], pa.int32()), _truncated(enc)


def tokenize_pairs(tokenizer, df: pd.DataFrame, max_length: int) -> tuple[pd.DataFrame, int]:
    """In memory, for small data (tests, benchmarks): the frame with `input_ids` and
    `token_type_ids` added, and the number of truncated pairs."""
    out = df.reset_index(drop=True).copy()
    if not len(df):
        out["input_ids"], out["token_type_ids"] = pd.Series(dtype=object), pd.Series(dtype=object)
        return out, 0
    ids, types, truncated = encode_pairs(tokenizer, list(df.premise), list(df.hypothesis),
                                         max_length)
    out["input_ids"] = list(ids.to_numpy(zero_copy_only=False))
    out["token_type_ids"] = list(types.to_numpy(zero_copy_only=False))
    return out, truncated


def tokenize_sentences(tokenizer, sentences: list[str], max_length: int) -> pd.DataFrame:
    """In memory, for small data (tests, benchmarks): sentences and their `input_ids`."""
    ids, _ = encode_sentences(tokenizer, sentences, max_length)
    return pd.DataFrame({"sentence": sentences,
                         "input_ids": list(ids.to_numpy(zero_copy_only=False))})


class SplitStats:
    """What summary.json says of a split, counted batch by batch as it is written."""

    def __init__(self):
        self.rows, self.tokens, self.truncated = 0, 0, 0
        self.languages, self.labels = Counter(), Counter()
        self.labeled = False

    def add(self, languages, ids: pa.ListArray, truncated: int, labels=None) -> None:
        self.rows += len(ids)
        self.tokens += int(pc.sum(pc.list_value_length(ids)).as_py() or 0)
        self.truncated += truncated
        self.languages.update(languages)
        if labels is not None:
            self.labeled = True
            self.labels.update(np.asarray(labels).tolist())

    def summary(self) -> dict:
        rows = max(self.rows, 1)
        balance = ({name: round(self.labels[i] / rows, 4) for i, name in enumerate(LABELS)}
                   if self.labeled else None)
        return {"rows": self.rows, "rows_per_language": dict(sorted(self.languages.items())),
                "label_balance": balance, "truncation_rate": round(self.truncated / rows, 4),
                "mean_tokens": round(self.tokens / rows, 1) if self.rows else 0.0}


class SplitWriter:
    """One split, written a record batch at a time as an Arrow IPC stream."""

    def __init__(self, path, schema: pa.Schema):
        self.schema, self.stats = schema, SplitStats()
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, schema)

    def write(self, columns: dict) -> None:
        self._writer.write_batch(pa.record_batch(
            [pa.array(columns[f.name], type=f.type) if not isinstance(columns[f.name], pa.Array)
             else columns[f.name] for f in self.schema], schema=self.schema))

    def close(self) -> None:
        self._writer.close()
        self._sink.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def write_pairs(path, pairs: pd.DataFrame, tokenizer, max_length: int) -> dict:
    """NLI pairs (language, premise, hypothesis[, label]) tokenized into a split file; its
    summary."""
    labeled = "label" in pairs
    with SplitWriter(path, pair_schema(labeled)) as out:
        for start in range(0, len(pairs), ROWS_PER_BATCH):
            part = pairs.iloc[start:start + ROWS_PER_BATCH]
            text = {k: part[k].astype(str).tolist() for k in ("language", "premise", "hypothesis")}
            ids, types, truncated = encode_pairs(tokenizer, text["premise"], text["hypothesis"],
                                                 max_length)
            labels = part.label.to_numpy(np.int64) if labeled else None
            out.write({**text, "label": labels, "input_ids": ids, "token_type_ids": types})
            out.stats.add(text["language"], ids, truncated, labels)
    return out.stats.summary()


def write_sentences(path, sentences, tokenizer, max_length: int) -> dict:
    """(language, sentence) pairs from any iterable, tokenized a batch at a time into a split
    file; its summary. The iterable is consumed once and never held whole."""
    with SplitWriter(path, SENTENCE_SCHEMA) as out:
        for languages, texts in batched(sentences, ROWS_PER_BATCH):
            ids, truncated = encode_sentences(tokenizer, texts, max_length)
            out.write({"language": languages, "sentence": texts, "input_ids": ids})
            out.stats.add(languages, ids, truncated)
    return out.stats.summary()


def batched(pairs, size: int):
    """([first items], [second items]) of every `size` (a, b) pairs of an iterable."""
    a, b = [], []
    for x, y in pairs:
        a.append(x)
        b.append(y)
        if len(a) == size:
            yield a, b
            a, b = [], []
    if a:
        yield a, b


@contextlib.contextmanager
def _reading(path: Path):
    """A missing or unreadable split file ends the stage with one line naming it."""
    if not path.is_file():
        raise ConfigError(f"{path}: missing; run the prepare stage first (dvc repro prepare)")
    try:
        yield
    except (pa.ArrowInvalid, OSError) as err:
        raise ConfigError(f"{path}: not a prepared split ({err}); rerun the prepare stage") from None


def open_table(path) -> pa.Table:
    """A split file as a table whose buffers are the memory-mapped file (nothing is copied)."""
    path = Path(path)
    with _reading(path):
        return pa.ipc.open_stream(pa.memory_map(str(path), "r")).read_all()


def read_split(folder, split: str) -> "Rows":
    return Rows.open(split_path(folder, split))


def token_vocabulary(paths) -> set[int]:
    """Every token id of some split files."""
    seen = set()
    for path in paths:
        for chunk in open_table(path).column("input_ids").chunks:
            seen.update(np.unique(chunk.values.to_numpy()).tolist())
    return seen


def check_nli_frame(df: pd.DataFrame, where: str) -> None:
    missing = [c for c in NLI_COLUMNS if c not in df.columns]
    if missing:
        raise ConfigError(f"{where}: missing columns {missing}; expected {list(NLI_COLUMNS)}")
    if len(df) == 0:
        raise ConfigError(f"{where}: empty split")
    bad = ~df.label.isin(range(len(LABELS)))
    if bad.any():
        raise ConfigError(f"{where}: label {df.label[bad].iloc[0]!r} is not one of 0..2 {LABELS}")


class _Part:
    """One table's token ids, found by a per-row index: a row's position and length.

    A split file's ids are read with pread into a fresh array (the page cache holds the file
    once for every process, and no process maps it, so its resident memory stays what it
    allocates); an in-memory table's are views of its arrays. A file's table is opened
    memory-mapped only to build the index and to read a column, then closed again.
    """

    def __init__(self, table: pa.Table | None = None, path: Path | None = None):
        self.path, self.table, self._file = path, table, None
        if path is not None:
            with _reading(path), pa.memory_map(str(path), "r") as source:
                base = source.read_buffer(1).address  # positions in the file, not in memory
                source.seek(0)
                self._index(pa.ipc.open_stream(source).read_all(), base)
            self._file = open(path, "rb")
        else:
            self._index(table, None)

    def _index(self, table: pa.Table, base: int | None) -> None:
        self.rows, self.names = table.num_rows, table.column_names
        self.ids = self._positions(table.column("input_ids"), base)
        self.types = (self._positions(table.column("token_type_ids"), base)
                      if "token_type_ids" in self.names else None)

    @staticmethod
    def _positions(column: pa.ChunkedArray, base: int | None):
        """(where each row's ids start, their number, their dtype, the flat values of an
        in-memory table): byte positions in the file for a file, element indices otherwise."""
        starts, lengths, flats = [], [], []
        listed = pa.types.is_list(column.type)  # an empty frame's column has no list type
        dtype = np.dtype(column.type.value_type.to_pandas_dtype() if listed else np.int32)
        for chunk in (c for c in column.chunks if len(c)):
            offsets = np.asarray(chunk.offsets, dtype=np.int64)
            lengths.append(np.diff(offsets).astype(np.int32))
            if base is None:
                done = sum(len(f) for f in flats)
                flats.append(chunk.values.to_numpy())
                starts.append(offsets[:-1] + done)
            else:
                buffer = chunk.values.buffers()[1]
                starts.append(buffer.address - base + offsets[:-1] * dtype.itemsize)
        join = (lambda parts, t: np.concatenate(parts) if parts else np.zeros(0, t))
        flat = join(flats, dtype) if base is None else None
        return join(starts, np.int64), join(lengths, np.int32), dtype, flat

    def read(self, which, i: int) -> np.ndarray:
        start, lengths, dtype, flat = which
        n = int(lengths[i])
        if flat is not None:
            return flat[start[i]:start[i] + n]
        return np.frombuffer(os.pread(self._file.fileno(), n * dtype.itemsize, int(start[i])),
                             dtype=dtype)

    def open_table(self) -> pa.Table:
        return self.table if self.path is None else open_table(self.path)


class Rows:
    """Rows of prepared splits: a lengths array and a per-row index (12-20 bytes a row) in
    memory, token ids read a row at a time when a batch needs them (see _Part). A selection is
    an index array over the parts' rows, and per-row values computed in a stage (the teacher's
    logits, the labels of unlabeled pairs) are arrays beside them (`assign`)."""

    def __init__(self, parts: list[_Part]):
        self.parts = list(parts)
        self._starts = np.cumsum([0] + [p.rows for p in self.parts])
        self.index = None  # rows of the parts, in order; None: all of them
        self.columns = {}  # name -> array with one entry per row (after the index)
        self._lengths = None

    @classmethod
    def open(cls, path) -> "Rows":
        return cls([_Part(path=Path(path))])

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> "Rows":
        """In-memory rows of a frame (input_ids, optionally token_type_ids, label, ...)."""
        extra = [c for c in ("teacher_logits",) if c in df]
        rows = cls([_Part(table=pa.Table.from_pandas(df.drop(columns=extra),
                                                     preserve_index=False))])
        for name in extra:
            rows.columns[name] = np.stack(df[name].to_list()).astype(np.float32)
        return rows

    @classmethod
    def concat(cls, parts: list["Rows"]) -> "Rows":
        """The rows of several selections, one after the other; they must carry the same
        assigned columns."""
        names = set(parts[0].columns)
        if any(set(p.columns) != names for p in parts):
            raise ValueError(f"Rows.concat: columns differ: {[sorted(p.columns) for p in parts]}")
        out = cls([q for p in parts for q in p.parts])
        bases = np.cumsum([0] + [p.total for p in parts])
        out.index = np.concatenate([p.base_rows() + base for p, base in zip(parts, bases)])
        out.columns = {n: np.concatenate([p.columns[n] for p in parts]) for n in names}
        return out

    @property
    def total(self) -> int:
        """Rows of the underlying parts, selected or not."""
        return int(self._starts[-1])

    def base_rows(self) -> np.ndarray:
        return np.arange(self.total) if self.index is None else self.index

    def __len__(self) -> int:
        return self.total if self.index is None else len(self.index)

    def __contains__(self, name: str) -> bool:
        return name in self.columns or (
            bool(self.parts) and all(name in p.names for p in self.parts))

    @property
    def lengths(self) -> np.ndarray:
        """Tokens of every row (int32)."""
        if self._lengths is None:
            every = np.concatenate([p.ids[1] for p in self.parts]) if self.parts else np.zeros(
                0, np.int32)
            self._lengths = every if self.index is None else every[self.index]
        return self._lengths

    def table(self, k: int = 0) -> pa.Table:
        """Part k as an Arrow table (memory-mapped for a file): for its text columns."""
        return self.parts[k].open_table()

    def column(self, name: str) -> np.ndarray:
        """One value per row: an assigned column, else the tables' column (read whole: meant
        for labels and languages, not for a corpus's text)."""
        if name in self.columns:
            return self.columns[name]
        if name not in self:
            raise KeyError(name)
        every = np.concatenate([p.open_table().column(name).to_numpy() for p in self.parts])
        return every if self.index is None else every[self.index]

    def positions_in(self, name: str, values) -> np.ndarray:
        """Positions of the rows whose string column `name` is one of `values`, found by Arrow
        (no Python object per row)."""
        wanted = pa.array(list(values), pa.string())
        found = [pc.is_in(p.open_table().column(name), value_set=wanted)
                 .to_numpy(zero_copy_only=False) for p in self.parts]
        mask = np.concatenate(found) if found else np.zeros(0, bool)
        return np.flatnonzero(mask if self.index is None else mask[self.index])

    def token_ids(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(input ids, token types or None) of row i."""
        row = int(i if self.index is None else self.index[i])
        k = int(np.searchsorted(self._starts, row, side="right")) - 1
        part, j = self.parts[k], row - int(self._starts[k])
        return part.read(part.ids, j), None if part.types is None else part.read(part.types, j)

    def select(self, positions) -> "Rows":
        out = copy.copy(self)
        positions = np.asarray(positions, dtype=np.int64)
        out.index = self.base_rows()[positions]
        out.columns = {n: v[positions] for n, v in self.columns.items()}
        out._lengths = None if self._lengths is None else self._lengths[positions]
        return out

    def assign(self, **columns) -> "Rows":
        """These rows with more per-row arrays (one entry per row, in row order)."""
        out = copy.copy(self)
        out.columns = dict(self.columns)
        for name, values in columns.items():
            values = np.asarray(values)
            if len(values) != len(self):
                raise ValueError(f"Rows.assign: {name} has {len(values)} rows, expected {len(self)}")
            out.columns[name] = values
        return out


def as_rows(rows) -> Rows:
    """Rows of a prepared split, or of an in-memory frame (tests, small tools)."""
    return rows if isinstance(rows, Rows) else Rows.from_frame(rows)


class TokenDataset(torch.utils.data.Dataset):
    """Rows of a split; each item is a dict of 1-d tensors, made when it is asked for."""

    def __init__(self, rows):
        self.rows = as_rows(rows)
        self.labels = (torch.from_numpy(self.rows.column("label").astype(np.int64))
                       if "label" in self.rows else None)
        # the fine-tuned teacher's logits of each row (kdcascade.teacher_logits), if assigned
        self.teacher_logits = (torch.from_numpy(self.rows.column("teacher_logits").astype(
            np.float32)) if "teacher_logits" in self.rows else None)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        ids, types = self.rows.token_ids(i)
        item = {"input_ids": torch.from_numpy(ids.astype(np.int64))}
        if types is not None:
            item["token_type_ids"] = torch.from_numpy(types.astype(np.int64))
        if self.labels is not None:
            item["labels"] = self.labels[i]
        if self.teacher_logits is not None:
            item["teacher_logits"] = self.teacher_logits[i]
        return item


class PadCollator:
    """Pads a batch to its own longest row (dynamic padding), not to max_length."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, items):
        pad = torch.nn.utils.rnn.pad_sequence
        ids = pad([it["input_ids"] for it in items], batch_first=True,
                  padding_value=self.pad_token_id)
        mask = pad([torch.ones_like(it["input_ids"]) for it in items], batch_first=True)
        batch = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in items[0]:
            batch["token_type_ids"] = pad([it["token_type_ids"] for it in items],
                                          batch_first=True)
        for key in ("labels", "teacher_logits"):
            if key in items[0]:
                batch[key] = torch.stack([it[key] for it in items])
        return batch


def loader(rows, batch_size: int, pad_token_id: int) -> torch.utils.data.DataLoader:
    """Rows in order, for prediction (training batches come from kdcascade.batching)."""
    # a private generator: a DataLoader draws its base seed from one, and from the global RNG
    # without it, which would shift the dropout of training that goes on after a dev evaluation
    return torch.utils.data.DataLoader(TokenDataset(rows), batch_size=batch_size,
                                       generator=torch.Generator().manual_seed(0),
                                       collate_fn=PadCollator(pad_token_id))
