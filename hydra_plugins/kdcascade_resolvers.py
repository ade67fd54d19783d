"""OmegaConf resolvers that turn cascade.steps into the stages dvc.yaml loops over.

DVC's `foreach` cannot loop over an integer, so `dvc exp run -S cascade.steps=N` works by having
Hydra compose params.yaml, where these resolvers expand the schedule (kdcascade.schedule.stored)
into the lists that dvc.yaml loops over (cascade_learns_from also reads cascade.logits_from).
Hydra imports every module of the `hydra_plugins` namespace when it scans for plugins.
"""

import sys
from pathlib import Path

from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))
from kdcascade import schedule  # noqa: E402


def _stored(key):
    # a resolver's list must be an OmegaConf node to replace the interpolation string
    return lambda *shape: OmegaConf.create(schedule.stored(*shape)[key])


OmegaConf.register_new_resolver("cascade_distilled_from", _stored("distilled_from"), replace=True)
OmegaConf.register_new_resolver("cascade_learns_from", _stored("learns_from"), replace=True)
