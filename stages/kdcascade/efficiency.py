"""Size, FLOPs and measured inference speed of a model at fixed shapes."""

import statistics
import time
from pathlib import Path

import torch

from .models import count_parameters


def encoder_flops(config, seq_len: int) -> int:
    """Multiply-adds x2 of one forward pass of the encoder layers, per sequence.

    Per layer: Q, K, V, output projections (4 h^2), the feed-forward (2 h ff) per token, and the
    attention products (2 T h) per token. Embeddings are lookups and are left out.
    """
    h, ff, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = 2 * (4 * h * h + 2 * h * ff + 2 * seq_len * h)
    return n * seq_len * per_token


def size_on_disk(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))


@torch.no_grad()
def latency(model, batch_size: int, seq_len: int, repeats: int, warmup: int, device) -> dict:
    """Median wall time of a forward pass on random ids (ms), after warm-up runs."""
    model.to(device).eval()
    ids = torch.randint(1000, model.config.vocab_size, (batch_size, seq_len),
                        generator=torch.Generator().manual_seed(0)).to(device)
    mask = torch.ones_like(ids)
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(input_ids=ids, attention_mask=mask)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    ms = statistics.median(times) * 1000
    return {"ms": round(ms, 2), "examples_per_second": round(batch_size * 1000 / ms, 1)}


def random_inputs(vocab_size: int, batch_size: int, seq_len: int, names) -> dict:
    """The timing batch of `latency`: random ids (seed 0), every token real, token types 0."""
    ids = torch.randint(1000, vocab_size, (batch_size, seq_len),
                        generator=torch.Generator().manual_seed(0))
    made = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids)}
    return {name: made[name] for name in names}


def take_turns(runs: dict, batch_size: int, repeats: int, warmup: int = 2,
               min_seconds: float = 0.0, max_repeats: int = 50) -> dict:
    """Median wall time (ms) of each of several callables that take turns, one call of each per
    round: load from other jobs on the machine falls on all of them. After `warmup` rounds,
    `repeats` timed rounds, and more (up to `max_repeats`) until the timed rounds took
    `min_seconds`: a fast call (batch 1) gets enough samples for a stable median at little
    cost, a slow one (batch 32) no more than `repeats`. Each entry says how many calls it timed."""
    times = {name: [] for name in runs}
    for _ in range(warmup):
        for run in runs.values():
            run()
    spent, rounds = 0.0, 0
    while rounds < repeats or (spent < min_seconds and rounds < max_repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            spent += times[name][-1]
        rounds += 1
    out = {}
    for name, t in times.items():
        ms = statistics.median(t) * 1000
        out[name] = {"ms": round(ms, 2), "examples_per_second": round(batch_size * 1000 / ms, 1),
                     "runs": len(t)}
    return out


def profile(model, folder: Path, cfg: dict, device) -> dict:
    seq = cfg["timing_length"]
    out = {"parameters": count_parameters(model.base_model), "bytes_on_disk": size_on_disk(folder),
           "encoder_gflops": round(encoder_flops(model.config, seq) / 1e9, 3)}
    if cfg["timing_repeats"] > 0:
        out["latency"] = {f"batch{b}": latency(model, b, seq, cfg["timing_repeats"], 2, device)
                          for b in cfg["timing_batches"]}
    return out
