"""OmegaConf resolvers that turn cascade.steps into the stages dvc.yaml loops over.

DVC's `foreach` cannot loop over an integer, so `dvc exp run -S cascade.steps=N` works by having
Hydra compose params.yaml, where these resolvers expand the schedule into the lists that dvc.yaml
loops over: one resolver `cascade_<key>` per key of kdcascade.schedule.STORED, given the params
that key is computed from (conf/config.yaml passes them in STORED's order).
Hydra imports every module of the `hydra_plugins` namespace when it scans for plugins.
"""

import sys
from pathlib import Path

from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))
from kdcascade import schedule  # noqa: E402


def _stored(key):
    # a resolver's list must be an OmegaConf node to replace the interpolation string
    return lambda *args: OmegaConf.create(schedule.stored_value(key, *args))


for _key in schedule.STORED:
    OmegaConf.register_new_resolver(f"cascade_{_key}", _stored(_key), replace=True)
