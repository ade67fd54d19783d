"""Compose params.yaml from conf/ exactly as `dvc exp run` does (DVC's own Hydra code).

    python -m kdcascade.compose [OVERRIDE ...]     e.g. cascade.steps=2 preset=paper

Run it from the repo root (with PYTHONPATH=stages) after editing conf/, so plain `dvc repro`
reads the same params that `dvc exp run` would compose. Bad overrides end it as they end a
stage: one `error:` line, exit status 2.
"""

import sys
from pathlib import Path

from . import runtime
from .errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def one_line(err: Exception) -> str:
    """What went wrong, in the stages' words where a resolver raised it."""
    from hydra.errors import MissingConfigException

    cause = err
    while cause is not None:  # OmegaConf wraps a resolver's ConfigError
        if isinstance(cause, ConfigError):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options:
        group, _, name = err.missing_cfg_file.rpartition("/")
        return f"{group}={name}: expected one of {', '.join(err.options)} (conf/{group}/)"
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def compose(output: Path, overrides: list[str]) -> None:
    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        compose_and_dump(output, str(ROOT / "conf"), None, "config", str(ROOT), overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from err


def run() -> None:
    compose(ROOT / "params.yaml", sys.argv[1:])
    print(f"wrote {ROOT / 'params.yaml'}")


if __name__ == "__main__":
    runtime.main(run)
