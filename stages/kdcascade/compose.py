"""Compose params.yaml from conf/ exactly as `dvc exp run` does (DVC's own Hydra code).

    python -m kdcascade.compose [OVERRIDE ...]     e.g. cascade.steps=2 preset=paper

Run it from the repo root (with PYTHONPATH=stages) after editing conf/, so plain `dvc repro`
reads the same params that `dvc exp run` would compose.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def compose(output: Path, overrides: list[str]) -> None:
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(output, str(ROOT / "conf"), None, "config", str(ROOT), overrides)


if __name__ == "__main__":
    compose(ROOT / "params.yaml", sys.argv[1:])
    print(f"wrote {ROOT / 'params.yaml'}")
