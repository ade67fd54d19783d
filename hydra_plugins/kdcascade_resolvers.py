"""OmegaConf resolvers that turn cascade.steps into the list of distill stages.

DVC's `foreach` cannot loop over an integer, so `dvc exp run -S cascade.steps=N` works by having
Hydra compose params.yaml, where these resolvers expand the schedule into records that dvc.yaml
loops over. Hydra imports every module of the `hydra_plugins` namespace when it scans for plugins.
"""

import sys
from pathlib import Path

from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))
from kdcascade import schedule  # noqa: E402


def _as_config(fn):
    # a resolver's dict must be an OmegaConf node to replace the interpolation string
    return lambda *args: OmegaConf.create(fn(*args))


OmegaConf.register_new_resolver("cascade_schedule", _as_config(schedule.distill_steps), replace=True)
OmegaConf.register_new_resolver("cascade_models", _as_config(schedule.models), replace=True)
OmegaConf.register_new_resolver("cascade_students", _as_config(schedule.students), replace=True)
