"""A fine-tuned model's logits on the fine-tuning splits, computed once by its own stage and read
by the models that learn them (soft labels, transfer pairs), which then need no forward pass of
that model: the teacher's (`finetune-teacher`), or with cascade.logits_from=predecessor each
assistant's for the model distilled from it (`finetune@<assistant>`):

    data/logits/<model>/train.npy      float32 [rows of train.arrow, labels], in row order
                        transfer.npy   the same for transfer.arrow (when transfer is on)
                        sources.json   the model, and for each split: the file, its rows, sha256

The student's and the truncated baseline's folders name no split (nobody learns theirs). A
learner refuses logits of another model than the one it should learn from, or computed from
other data than its own splits (a stale folder), naming the file and what to rerun.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .labels import LABELS

SOURCES = "sources.json"


def rerun(model: str, teacher: bool) -> str:
    stage = "finetune-teacher" if teacher else f"finetune@{model}"
    return f"rerun the {stage} stage (dvc repro {stage})"


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write(folder: Path, model: str, splits: dict[str, tuple[Path, np.ndarray]]) -> None:
    """`model`'s logits, {split: (its split file, logits in row order)}, into `folder` (an
    existing scratch folder: the stage makes it the output only once everything is written)."""
    folder = Path(folder)
    sources = {}
    for split, (split_file, values) in splits.items():
        np.save(folder / f"{split}.npy", np.asarray(values, dtype=np.float32))
        sources[split] = {"file": str(split_file), "rows": len(values),
                          "sha256": file_sha256(split_file)}
    (folder / SOURCES).write_text(json.dumps({"model": model, "splits": sources}, indent=2)
                                  + "\n", encoding="utf-8")


def read(folder, split: str, split_file: Path, rows: int, model: str,
         teacher: bool = True) -> np.ndarray:
    """The logits of `split` written by `model` (the teacher, or an assistant), checked against
    the split file the learner reads."""
    folder, split_file = Path(folder), Path(split_file)
    again = rerun(model, teacher)
    try:
        sources = json.loads((folder / SOURCES).read_text(encoding="utf-8"))
        writer, splits = sources["model"], sources["splits"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{folder / SOURCES}: missing or unreadable; {again}") from err
    if writer != model:
        raise ConfigError(f"{folder}: {writer}'s logits, but this model learns {model}'s "
                          f"(cascade.learns_from); pass the folder {model}'s stage writes")
    if split not in splits:
        raise ConfigError(f"{folder}: no logits of {model} for {split} (it was fine-tuned with "
                          f"other finetune.soft_labels / transfer params); {again}")
    if splits[split].get("sha256") != file_sha256(split_file):
        raise ConfigError(f"{folder / (split + '.npy')}: computed from another {split_file} than "
                          f"this one; {again}")
    values = np.load(folder / f"{split}.npy")
    if values.shape != (rows, len(LABELS)) or not np.isfinite(values).all():
        raise ConfigError(f"{folder / (split + '.npy')}: expected {rows} x {len(LABELS)} finite "
                          f"logits, found shape {values.shape}; {again}")
    return values
