"""What every stage script shares: params, seeds, provenance, atomic outputs, one-line errors."""

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from .errors import ConfigError

PARAMS_FILE = Path("params.yaml")


def load_params(path: Path = PARAMS_FILE) -> dict:
    if not Path(path).is_file():
        raise ConfigError(f"{path}: missing; run stages from the repo root")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


# seeds are offset per split and per process, and numpy takes only 0..2**32 - 1
SEED_LIMIT = 2**31


def seed_of(params: dict) -> int:
    """params['seed'], checked: every stage that reads the seed takes it from here."""
    seed = params.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r}: expected an integer")
    if not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"seed={seed}: expected an integer in 0..{SEED_LIMIT - 1}")
    return seed


def check_writable(*paths) -> None:
    """Fail before any work, naming the path, if an output cannot be written (a stage used to
    find out only when saving, after all its training). None entries are skipped.

    Each folder the output is written from gets a probe folder created and removed at once:
    permission bits say yes where the file system refuses (/proc, a read-only mount, root
    without rights on a network share)."""
    for path in (Path(p) for p in paths if p is not None):
        target = path.absolute()
        existing = next(p for p in (target, *target.parents) if p.exists())
        if not existing.is_dir():
            what = "it" if existing == target else existing
            raise ConfigError(f"{path}: cannot be written: {what} is not a folder")
        # an existing output is replaced from its parent (atomic_dir): both must take new files
        for folder in (existing, existing.parent) if existing == target else (existing,):
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ConfigError(f"{path}: cannot be written: no write permission in {folder}")
            refusal = probe(folder)
            if refusal:
                raise ConfigError(f"{path}: cannot be written: {folder} refuses new files "
                                  f"({refusal})")


def probe(folder: Path) -> str | None:
    """Why `folder` refuses a new entry (None if it takes one): a folder made and removed."""
    try:
        made = tempfile.mkdtemp(prefix=".write-probe-", dir=folder)
    except OSError as err:
        return err.strerror or type(err).__name__
    os.rmdir(made)
    return None


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def write_json(path: Path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_provenance(folder: Path, stage: str, params: dict) -> None:
    """The params and git commit that produced an output, stored beside it."""
    write_json(Path(folder) / "provenance.json",
               {"stage": stage, "git_commit": git_commit(), "params": params})


@contextlib.contextmanager
def atomic_dir(path: Path):
    """Yield a scratch folder that becomes `path` only if the block succeeds.

    A stage that fails half-way leaves nothing at `path` that could pass for a finished output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield scratch
        if path.exists():
            shutil.rmtree(path)
        os.replace(scratch, path)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)


def main(run) -> None:
    """Run a stage; bad input ends it with one line naming what is wrong, and exit status 2, and
    so does a file the file system refuses to read or write (naming it) where no check could
    tell before."""
    try:
        run()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        if err.filename is None:
            raise
        print(f"error: {err.filename}: {err.strerror or err}", file=sys.stderr)
        sys.exit(2)
