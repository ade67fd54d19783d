"""Global batches, their per-process slices and the slices' shares of the batch."""

import numpy as np
import pandas as pd
import pytest
import torch

from kdcascade import batching, losses, settings, training
from kdcascade.errors import ConfigError


def frame(lengths) -> pd.DataFrame:
    return pd.DataFrame({"input_ids": [np.arange(1, n + 1, dtype=np.int32) for n in lengths]})


LENGTHS = np.random.default_rng(0).integers(3, 60, size=203)


@pytest.mark.parametrize("group", [False, True])
def test_every_example_once_per_epoch_in_the_same_order_everywhere(group):
    plan = batching.BatchPlan(frame(LENGTHS), 16, 0, seed=5, group_by_length=group)
    epoch0, again, epoch1 = (plan.global_batches(e) for e in (0, 0, 1))
    assert len(plan) == len(epoch0) == 13
    assert sorted(np.concatenate(epoch0)) == list(range(203))
    assert [b.size for b in epoch0] == [16] * 12 + [11]
    assert all((a == b).all() for a, b in zip(epoch0, again))  # every process draws this
    assert not all(len(a) == len(b) and (a == b).all() for a, b in zip(epoch0, epoch1))


def test_grouping_by_length_cuts_padding():
    def padded(group):
        plan = batching.BatchPlan(frame(LENGTHS), 16, 0, seed=5, group_by_length=group)
        return sum(LENGTHS[b].max() * len(b) for b in plan.global_batches(0))
    assert padded(True) < 0.75 * padded(False)


@pytest.mark.parametrize("processes, accumulation", [(1, 1), (2, 1), (1, 3), (2, 2)])
def test_slices_partition_the_batch_and_their_shares_add_up(processes, accumulation):
    df = frame(LENGTHS)
    plans = [batching.BatchPlan(df, 16, 0, seed=1, processes=processes, rank=r,
                                accumulation=accumulation) for r in range(processes)]
    for indices in plans[0].global_batches(0)[-2:]:  # a full batch and the partial one
        micro = [mb for plan in plans for mb in plan.micro_batches(indices)]
        assert len(micro) == processes * accumulation
        assert sum(mb.examples for mb in micro) == len(indices)
        tokens = sum(int(mb.batch["attention_mask"].sum()) for mb in micro)
        assert tokens == LENGTHS[indices].sum()
        for unit in ("example", "token", "token_pair"):
            assert sum(mb.shares[unit] for mb in micro) == pytest.approx(1.0)
        for mb in micro:  # each slice is padded to its own longest row
            assert mb.batch["input_ids"].shape[1] == int(mb.batch["attention_mask"].sum(1).max())


def test_split_by_length_finds_the_cheapest_parts_by_hand():
    # one part: 6 x 40 + 10 = 250; [40, 38] [5, 5, 4, 3]: 2 x 40 + 4 x 5 + 2 x 10 = 120
    lengths = np.array([5, 40, 3, 38, 5, 4])
    parts = batching.split_by_length(lengths, overhead=10)
    assert [list(p) for p in parts] == [[1, 3], [0, 4, 5, 2]]
    # a pass that costs more than the padding it saves: one part
    one = batching.split_by_length(lengths, overhead=200)
    assert [list(p) for p in one] == [[1, 3, 0, 4, 5, 2]]
    # free passes: one part per distinct length
    assert len(batching.split_by_length(lengths, overhead=0)) == 5


@pytest.mark.parametrize("processes, accumulation", [(1, 1), (2, 2)])
def test_split_slices_hold_the_same_rows_and_shares_with_less_padding(processes, accumulation):
    # each row's first id names it
    df = pd.DataFrame({"input_ids": [np.array([1000 + r, *range(1, n)], dtype=np.int32)
                                     for r, n in enumerate(LENGTHS)]})

    def slices(indices, overhead):
        return [mb for r in range(processes) for mb in batching.BatchPlan(
            df, 32, 0, seed=1, processes=processes, rank=r, accumulation=accumulation,
            split_overhead=overhead).micro_batches(indices)]

    padded = {None: 0, batching.CPU_SPLIT_OVERHEAD: 0}
    cut = False
    for indices in batching.BatchPlan(df, 32, 0, seed=1, processes=processes,
                                      accumulation=accumulation).global_batches(0):
        whole, split = (slices(indices, overhead) for overhead in padded)
        cut |= len(split) > len(whole)
        assert sorted(int(x) for mb in split for x in mb.batch["input_ids"][:, 0]) == sorted(
            1000 + indices)
        for unit in ("example", "token", "token_pair"):
            assert sum(mb.shares[unit] for mb in split) == pytest.approx(1.0)
        for overhead, mbs in zip(padded, (whole, split)):
            padded[overhead] += sum(mb.batch["input_ids"].numel() for mb in mbs)
    assert cut
    assert padded[batching.CPU_SPLIT_OVERHEAD] < 0.8 * padded[None]


def test_a_batch_too_small_to_split_is_dropped():
    plan = batching.BatchPlan(frame([5] * 33), 16, 0, seed=0, processes=2, accumulation=2)
    assert len(plan) == 2 and plan.dropped_examples == 1


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_weighted_slices_add_up_to_the_whole_batch(name):
    """What makes several processes equal one: each loss, computed on slices and weighted by
    the slices' shares of its unit, sums to the loss of the whole batch."""
    torch.manual_seed(0)
    lengths = np.array([7, 3, 5, 2, 6, 4])
    mask = torch.tensor([[1] * n + [0] * (7 - n) for n in lengths])
    fn = losses.get_loss(name)
    shape = {"hidden": (6, 7, 8), "attention": (6, 2, 7, 7), "attention_scores": (6, 2, 7, 7),
             "qkv": (6, 7, 8), "logits": (6, 3)}[fn.feature]
    s, t = torch.randn(shape), torch.randn(shape)
    if fn.feature == "attention":
        s, t = s.softmax(-1), t.softmax(-1)
    args = {"minilm_relation": (2,), "logits_kl": (2.0,)}.get(name, ())

    def value(rows):
        if name == "logits_kl":
            return fn(s[rows], t[rows], *args)
        return fn(s[rows], t[rows], mask[rows], *args)

    whole = value(list(range(6)))
    total = batching.units(lengths)
    parts = [[0, 3], [1, 4, 5], [2]]
    summed = sum(value(p) * batching.units(lengths[p])[fn.unit]
                 / total[fn.unit] for p in parts)
    assert summed.item() == pytest.approx(whole.item(), rel=1e-5)


BASE = {"epochs": 1, "batch_size": 32, "lr": 1e-4, "warmup": 0.1, "device": "cpu"}


@pytest.mark.parametrize("change, words", [
    ({"processes": 0}, "distill.processes=0: expected a positive integer"),
    ({"gradient_accumulation": 1.5}, "distill.gradient_accumulation=1.5"),
    ({"checkpoint_every": -5}, "distill.checkpoint_every=-5: expected an integer >= 0"),
    ({"precision": "fp8"}, "distill.precision='fp8': expected one of fp32, bf16, fp16, auto"),
    ({"group_by_length": "yes"}, "distill.group_by_length='yes': expected true or false"),
    ({"split_by_length": "on"}, "distill.split_by_length='on': expected auto, true or false"),
    ({"split_by_length": 1}, "distill.split_by_length=1: expected auto, true or false"),
    ({"device": "tpu"}, "distill.device='tpu': expected auto, cpu, cuda or cuda:N"),
    ({"precision": "fp16"}, "distill.precision=fp16: needs a CUDA device"),
])
def test_bad_training_params_name_the_param(change, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(".", r"\.")):
        settings.check_training_params({**BASE, **change}, "distill")
        training.check_device({**BASE, **change}, "distill")


def test_every_precision_but_auto_has_a_dtype():
    assert set(training.DTYPES) | {"auto"} == set(settings.PRECISIONS)


def test_auto_precision_is_bf16_only_where_it_is_fast():
    cpu = torch.device("cpu")
    assert training.resolve_precision("auto", cpu) == (
        "bf16" if training.cpu_has_fast_bf16() else "fp32")
    assert training.resolve_precision("fp32", cpu) == "fp32"


def test_a_split_too_small_for_the_processes_names_the_file():
    with pytest.raises(ConfigError, match=r"d/distill\.arrow: 3 rows; distill\.processes x "
                                          r"distill\.gradient_accumulation needs at least 4"):
        settings.check_rows(3, {"processes": 2, "gradient_accumulation": 2}, "distill",
                            "d/distill.arrow")
