"""The fine-tuned teacher's logits on the fine-tuning splits, computed once by `finetune-teacher`
and read by every other model's fine-tuning (soft labels, transfer pairs), which then needs no
teacher forward pass of its own:

    data/teacher_logits/train.npy      float32 [rows of train.parquet, labels], in row order
                        transfer.npy   the same for transfer.parquet (when transfer is on)
                        sources.json   for each split: the file, its rows and sha256

A student refuses logits computed from other data than its own splits (a stale folder), naming
the file and what to rerun.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .labels import LABELS

SOURCES = "sources.json"
RERUN = "rerun the finetune-teacher stage (dvc repro finetune-teacher)"


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write(folder: Path, splits: dict[str, tuple[Path, np.ndarray]]) -> None:
    """{split: (its parquet file, logits in row order)} into `folder` (an existing scratch
    folder: the stage makes it the output only once everything is written)."""
    folder = Path(folder)
    sources = {}
    for split, (parquet, values) in splits.items():
        np.save(folder / f"{split}.npy", np.asarray(values, dtype=np.float32))
        sources[split] = {"file": str(parquet), "rows": len(values),
                          "sha256": file_sha256(parquet)}
    (folder / SOURCES).write_text(json.dumps(sources, indent=2) + "\n", encoding="utf-8")


def read(folder, split: str, parquet: Path, rows: int) -> np.ndarray:
    """The logits of `split`, checked against the parquet file the student reads."""
    folder, parquet = Path(folder), Path(parquet)
    try:
        sources = json.loads((folder / SOURCES).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{folder / SOURCES}: missing or unreadable; {RERUN}") from err
    if split not in sources:
        raise ConfigError(f"{folder}: no teacher logits for {split} (the teacher was fine-tuned "
                          f"with other finetune.soft_labels / transfer params); {RERUN}")
    if sources[split].get("sha256") != file_sha256(parquet):
        raise ConfigError(f"{folder / (split + '.npy')}: computed from another {parquet} than "
                          f"this one; {RERUN}")
    values = np.load(folder / f"{split}.npy")
    if values.shape != (rows, len(LABELS)) or not np.isfinite(values).all():
        raise ConfigError(f"{folder / (split + '.npy')}: expected {rows} x {len(LABELS)} finite "
                          f"logits, found shape {values.shape}; {RERUN}")
    return values
