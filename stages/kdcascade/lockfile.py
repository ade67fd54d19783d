"""dvc.lock entries of stages that dvc.yaml no longer defines, and their removal.

DVC writes the lock entry of every stage it runs and never removes one (treeverse/dvc#5293): after
`dvc exp run -S cascade.steps=1` following a 3-step run, dvc.lock still describes distill@L5,
finetune@L5 and the rest of the longer cascade. Stage names come from DVC itself (foreach
expanded against the current params.yaml), so nothing here repeats dvc.yaml's structure.
"""

from pathlib import Path

LOCK, PIPELINE = "dvc.lock", "dvc.yaml"


def pipeline_stages(root: Path) -> set[str]:
    """The stages the repo's top dvc.yaml defines now, as DVC names them (`distill@L5`)."""
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    pipeline = (Path(root) / PIPELINE).resolve()
    with Repo(str(root)) as repo:
        return {s.name for s in repo.index.stages
                if isinstance(s, PipelineStage) and Path(s.path).resolve() == pipeline}


def stale(lock: dict, stages: set[str]) -> list[str]:
    """Lock entries, in lock order, of stages that are not in `stages`."""
    return [name for name in (lock or {}).get("stages") or {} if name not in stages]


def stale_entries(root: Path) -> list[str]:
    """Entries of root/dvc.lock that the current dvc.yaml does not define (none without a lock)."""
    import yaml

    path = Path(root) / LOCK
    if not path.is_file():
        return []
    return stale(yaml.safe_load(path.read_text(encoding="utf-8")), pipeline_stages(root))


def prune(root: Path) -> list[str]:
    """Remove stale entries from root/dvc.lock (formatting kept, as DVC writes it); their names."""
    from dvc.utils.serialize import modify_yaml

    gone = stale_entries(root)
    if gone:
        with modify_yaml(str(Path(root) / LOCK)) as lock:
            for name in gone:
                del lock["stages"][name]
    return gone
