"""Prepared data on disk (parquet, token ids as int32) and batches padded dynamically."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .errors import ConfigError
from .labels import LABELS, NLI_COLUMNS

SPLITS = ("train", "dev", "test")


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


def tokenize_pairs(tokenizer, df: pd.DataFrame, max_length: int) -> tuple[pd.DataFrame, int]:
    """Token ids for each pair, truncated the same way everywhere (longest side first).

    Returns the frame with `input_ids` and `token_type_ids` added and the number of truncated pairs.
    """
    out = df.reset_index(drop=True).copy()
    if not len(df):  # an empty transfer corpus: the columns, no rows
        out["input_ids"], out["token_type_ids"] = pd.Series(dtype=object), pd.Series(dtype=object)
        return out, 0
    enc = tokenizer(list(df.premise), list(df.hypothesis), truncation="longest_first",
                    max_length=max_length, return_token_type_ids=True)
    full = tokenizer(list(df.premise), list(df.hypothesis), truncation=False)
    truncated = int(sum(len(a) > max_length for a in full["input_ids"]))
    # int32: a 119k (mBERT) or 250k (XLM-R) vocabulary overflows uint16
    out["input_ids"] = [np.asarray(ids, dtype=np.int32) for ids in enc["input_ids"]]
    out["token_type_ids"] = [np.asarray(t, dtype=np.int8) for t in enc["token_type_ids"]]
    return out, truncated


def tokenize_sentences(tokenizer, sentences: list[str], max_length: int) -> pd.DataFrame:
    enc = tokenizer(sentences, truncation=True, max_length=max_length)
    return pd.DataFrame({"sentence": sentences,
                         "input_ids": [np.asarray(i, dtype=np.int32) for i in enc["input_ids"]]})


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, path)


def read_split(folder: Path, split: str) -> pd.DataFrame:
    path = Path(folder) / f"{split}.parquet"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; run the prepare stage first (dvc repro prepare)")
    return pd.read_parquet(path)


def check_nli_frame(df: pd.DataFrame, where: str) -> None:
    missing = [c for c in NLI_COLUMNS if c not in df.columns]
    if missing:
        raise ConfigError(f"{where}: missing columns {missing}; expected {list(NLI_COLUMNS)}")
    if len(df) == 0:
        raise ConfigError(f"{where}: empty split")
    bad = ~df.label.isin(range(len(LABELS)))
    if bad.any():
        raise ConfigError(f"{where}: label {df.label[bad].iloc[0]!r} is not one of 0..2 {LABELS}")


class TokenDataset(torch.utils.data.Dataset):
    """Rows of a prepared split; each item is a dict of 1-d tensors."""

    def __init__(self, df: pd.DataFrame):
        self.input_ids = [torch.from_numpy(np.asarray(x, dtype=np.int64)) for x in df.input_ids]
        self.token_type_ids = ([torch.from_numpy(np.asarray(x, dtype=np.int64))
                                for x in df.token_type_ids]
                               if "token_type_ids" in df else None)
        self.labels = (torch.tensor(df.label.to_numpy(), dtype=torch.long) if "label" in df
                       else None)
        # the fine-tuned teacher's logits of each row (kdcascade.teacher_logits), if attached
        self.teacher_logits = (torch.from_numpy(np.stack(df.teacher_logits.to_list()).astype(
            np.float32)) if "teacher_logits" in df else None)

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, i):
        item = {"input_ids": self.input_ids[i]}
        if self.token_type_ids is not None:
            item["token_type_ids"] = self.token_type_ids[i]
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


def loader(df: pd.DataFrame, batch_size: int, pad_token_id: int) -> torch.utils.data.DataLoader:
    """Rows in order, for prediction (training batches come from kdcascade.batching)."""
    # a private generator: a DataLoader draws its base seed from one, and from the global RNG
    # without it, which would shift the dropout of training that goes on after a dev evaluation
    return torch.utils.data.DataLoader(TokenDataset(df), batch_size=batch_size,
                                       generator=torch.Generator().manual_seed(0),
                                       collate_fn=PadCollator(pad_token_id))
