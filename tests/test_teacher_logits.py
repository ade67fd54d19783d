"""The fine-tuned teacher's logits, computed once and read by every other model's fine-tuning."""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import write_split
from kdcascade import batching, teacher_logits
from kdcascade.errors import ConfigError


def split_file(path, rows, first=1):
    return write_split(pd.DataFrame({"input_ids": [[101, first + i, 102] for i in range(rows)],
                                     "label": [i % 3 for i in range(rows)]}), path)


def test_logits_round_trip_and_refuse_other_data(tmp_path):
    train = split_file(tmp_path / "train.arrow", 5)
    values = np.arange(15, dtype=np.float32).reshape(5, 3)
    folder = tmp_path / "logits"
    folder.mkdir()
    teacher_logits.write(folder, "L6", {"train": (train, values)})
    np.testing.assert_array_equal(teacher_logits.read(folder, "train", train, 5, "L6"), values)

    with pytest.raises(ConfigError, match=r"no logits of L6 for transfer.*finetune-teacher"):
        teacher_logits.read(folder, "transfer", train, 5, "L6")
    # an assistant's logits (finetune.logits_from=predecessor): its own stage is named
    with pytest.raises(ConfigError, match=r"no logits of L6 for transfer.*dvc repro finetune@L6"):
        teacher_logits.read(folder, "transfer", train, 5, "L6", teacher=False)
    with pytest.raises(ConfigError, match=r"logits: L6's logits, but this model learns L5's "
                                          r"\(cascade.learns_from\)"):
        teacher_logits.read(folder, "train", train, 5, "L5")
    with pytest.raises(ConfigError, match=r"expected 4 x 3 finite logits, found shape \(5, 3\)"):
        teacher_logits.read(folder, "train", train, 4, "L6")
    # the same rows in another order are other data: the logits would land on the wrong rows
    split_file(train, 5, first=2)
    with pytest.raises(ConfigError, match=r"logits/train.npy: computed from another .*train"
                                          r".arrow than this one; rerun the finetune-teacher"):
        teacher_logits.read(folder, "train", train, 5, "L6")
    with pytest.raises(ConfigError, match=r"sources.json: missing or unreadable"):
        teacher_logits.read(tmp_path / "nowhere", "train", train, 5, "L6")


def test_each_training_row_carries_its_own_logits():
    """Shuffled, length-grouped batches split over accumulation steps: every row's logits
    travel with it (row i's second token is 1000 + i, its logits are all i)."""
    from kdcascade import classify

    rows = 37
    df = pd.DataFrame({"input_ids": [np.array([101, 1000 + i] + [5] * (i % 7), dtype=np.int32)
                                     for i in range(rows)],
                       "label": [i % 3 for i in range(rows)]})
    df = classify.with_teacher_logits(df, np.repeat(np.arange(rows, dtype=np.float32)[:, None],
                                                    3, axis=1))
    plan = batching.BatchPlan(df, 8, 0, seed=3, group_by_length=True, accumulation=2)
    seen = []
    for indices in plan.global_batches(0):
        for micro in plan.micro_batches(indices):
            got = micro.batch["teacher_logits"]
            assert got.dtype == torch.float32 and got.shape == (micro.examples, 3)
            row = micro.batch["input_ids"][:, 1] - 1000
            assert torch.equal(got, row[:, None].float().expand(-1, 3))
            seen += row.tolist()
    assert sorted(seen) == list(range(rows))
