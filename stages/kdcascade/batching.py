"""Global batches split into per-process micro-batches, each padded to its own longest row.

`batch_size` is the global batch: the examples behind one optimizer step, whatever the number of
processes and gradient-accumulation steps. Every process draws the same order from (seed, epoch)
and takes its own slices of each global batch; a slice's loss is weighted by its share of the
global batch's units (examples, tokens, token pairs: each loss's `unit` in kdcascade.losses), so P processes x K
accumulation steps compute the update that one process computes on the whole batch.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .data import PadCollator, TokenDataset

# length grouping sorts within windows of this many global batches (as transformers'
# LengthGroupedSampler does with its mega-batches), so batches stay random but evenly long
GROUP_WINDOW = 50
# what one more forward and backward pass costs on a CPU, in padded tokens of work: measured
# 44 (bf16) to 69 (fp32) on 2 cores with a 5-layer MiniLM (a fixed cost per pass beside a cost
# per token, both per layer, so the same for deeper models of that width)
CPU_SPLIT_OVERHEAD = 64


@dataclass
class MicroBatch:
    batch: dict     # padded tensors (input_ids, attention_mask, ...)
    shares: dict    # {"example" | "token" | "token_pair": fraction of the global batch's units}
    examples: int


def split_by_length(lengths: np.ndarray, overhead: float) -> list[np.ndarray]:
    """Positions (into `lengths`) of the length-sorted parts that minimise the padded tokens of
    the parts plus `overhead` per part: the cheapest way to run these rows as micro-batches of
    one optimizer step. Exact, by dynamic programming over the cut points (parts of a sorted
    list are contiguous in the optimum)."""
    order = np.argsort(-lengths, kind="stable")
    longest = lengths[order].astype(np.float64)
    n = len(order)
    best = np.zeros(n + 1)
    start = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):  # best[j]: cost of the first j rows; a part [i, j) pads to row i
        i = np.arange(j)
        costs = best[:j] + (j - i) * longest[:j] + overhead
        start[j] = int(np.argmin(costs))
        best[j] = costs[start[j]]
    cuts, j = [], n
    while j > 0:
        cuts.append(j)
        j = start[j]
    edges = [0, *reversed(cuts)]
    return [order[a:b] for a, b in zip(edges, edges[1:])]


def units(lengths: np.ndarray) -> dict[str, float]:
    lengths = lengths.astype(np.float64)
    return {"example": float(len(lengths)), "token": float(lengths.sum()),
            "token_pair": float((lengths ** 2).sum())}


class EpochBatches(Sequence):
    """The global batches of one epoch: slices of one order array, not an array per batch."""

    def __init__(self, order: np.ndarray, starts: np.ndarray, sizes: np.ndarray):
        self.order, self.starts, self.sizes = order, starts, sizes

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        start = self.starts[i]
        return self.order[start:start + self.sizes[i]]


class BatchPlan:
    """The batches of one training run, as seen by process `rank` of `processes`.

    Works from the rows' lengths and indices alone (kdcascade.data.Rows): a corpus of millions
    of sentences costs a few bytes a row here, and the rows of a batch are read when it runs.
    """

    def __init__(self, rows, batch_size: int, pad_token_id: int, seed: int,
                 group_by_length: bool = False, processes: int = 1, rank: int = 0,
                 accumulation: int = 1, split_overhead: float | None = None):
        self.dataset = TokenDataset(rows)
        self.lengths = self.dataset.rows.lengths
        self.batch_size, self.seed = batch_size, seed
        self.group_by_length, self.split_overhead = group_by_length, split_overhead
        self.slices, self.rank, self.processes = processes * accumulation, rank, processes
        self.collate = PadCollator(pad_token_id)
        n = len(self.lengths)
        self.sizes = np.minimum(batch_size, n - np.arange(0, n, batch_size))
        # a global batch too small to give every process and accumulation step one example is
        # dropped (only the last batch of an epoch can be); batch sizes do not depend on order
        self.kept = self.sizes >= self.slices
        self.dropped_examples = int(self.sizes[~self.kept].sum())

    def __len__(self) -> int:
        """Optimizer steps per epoch."""
        return int(self.kept.sum())

    def global_batches(self, epoch: int) -> EpochBatches:
        """Example indices of each global batch of `epoch`, the same on every process."""
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.lengths)
        order = rng.permutation(n)
        starts = np.arange(0, n, self.batch_size)
        if self.group_by_length:
            window = self.batch_size * GROUP_WINDOW
            order = np.concatenate([
                part[np.argsort(-self.lengths[part], kind="stable")]
                for part in np.split(order, range(window, n, window))])
            # the partial batch stays last so that batch sizes do not depend on the order
            full = rng.permutation(len(starts) - 1) if len(starts) > 1 else []
            starts = np.concatenate([starts[:-1][full], starts[-1:]]).astype(np.int64)
        sizes = self.sizes[starts // self.batch_size]
        keep = sizes >= self.slices
        return EpochBatches(order, starts[keep], sizes[keep])

    def micro_batches(self, indices: np.ndarray) -> list[MicroBatch]:
        """This process's slices of one global batch, one per accumulation step.

        Slices are strided (slice j takes rows j, j + P*K, ...), so with length grouping every
        process gets rows of similar length and none waits for the longest ones. With
        `split_overhead`, each slice is further cut into length-sorted parts where the padding
        saved outweighs one more pass (`split_by_length`): the same rows and shares, so the same
        update, with fewer padded tokens.
        """
        total = units(self.lengths[indices])
        out = []
        for step in range(self.slices // self.processes):
            part = indices[step * self.processes + self.rank::self.slices]
            pieces = ([part] if self.split_overhead is None else
                      [part[p] for p in split_by_length(self.lengths[part], self.split_overhead)])
            for piece in pieces:
                mine = units(self.lengths[piece])
                out.append(MicroBatch(self.collate([self.dataset[i] for i in piece]),
                                      {k: mine[k] / total[k] for k in total}, len(piece)))
        return out


def plan_for(rows, cfg: dict, pad_token_id: int, seed: int, accelerator) -> BatchPlan:
    """The shuffled batches a training section (distill / finetune) asks for, for this process."""
    split = cfg.get("split_by_length", False)
    if split == "auto":  # a GPU pass costs about the same at these lengths, padded or not
        split = accelerator.device.type == "cpu"
    return BatchPlan(rows, cfg["batch_size"], pad_token_id, seed,
                     group_by_length=cfg.get("group_by_length", False),
                     processes=accelerator.num_processes, rank=accelerator.process_index,
                     accumulation=cfg.get("gradient_accumulation", 1),
                     split_overhead=CPU_SPLIT_OVERHEAD if split else None)
