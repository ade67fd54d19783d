"""Stage `report`: a markdown report and plots a person reads.

    python stages/report.py --eval reports/eval --export reports/export --data data/prepared \
        --live reports/live --out reports

Writes reports/report.md, plots in reports/plots/ (accuracy against layers and against latency,
per-language accuracy of teacher and student, training curves, accuracy against latency of the
exported variants), reports/summary.json (the headline: the pipeline's only DVC metrics, so the
columns of `dvc exp show`) and reports/accuracy_by_layers.json (the cascade's average accuracy
by depth, a DVC plot that `dvc plots diff` draws as one line per experiment).
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from kdcascade import runtime, schedule, settings  # noqa: E402
from kdcascade.errors import ConfigError  # noqa: E402

# the two baselines: the teacher's bottom layers, never distilled, fine-tuned as the student is
# (truncated) or on the labels alone (plain)
BASELINES = {"truncated": ("x", "C3", "truncated, fine-tuned as the student"),
             "plain": ("+", "C2", "truncated, labels alone")}


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def accuracy_table(metrics: dict) -> pd.DataFrame:
    rows = {f"{name} ({m['role']})": {**m["accuracy"], "retention %": m["retention"]}
            for name, m in metrics.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def plot_accuracy_vs_layers(metrics: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    cascade = [(m["layers"], m["accuracy"]["avg"]) for m in metrics.values()
               if m["role"] not in BASELINES]
    ax.plot(*zip(*cascade), marker="o", label="cascade (teacher, assistants, student)")
    for name, m in metrics.items():
        if m["role"] in BASELINES:
            marker, color, words = BASELINES[m["role"]]
            ax.scatter([m["layers"]], [m["accuracy"]["avg"]], marker=marker, s=60, color=color,
                       label=f"{name}: {words}")
    ax.axhline(100 / 3, color="grey", lw=0.8, ls="--", label="chance (balanced labels)")
    ax.set_xticks(sorted({m["layers"] for m in metrics.values()}))
    ax.set_xlabel("encoder layers")
    ax.set_ylabel("average test accuracy over languages (%)")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)


def efficiency_table(speed: dict) -> pd.DataFrame:
    rows = {}
    for name, e in speed.items():
        p = e["parameters"]
        row = {"params (M)": p["total"] / 1e6, "encoder params (M)": p["encoder"] / 1e6,
               "embedding params (M)": p["embeddings"] / 1e6,
               "size on disk (MB)": e["bytes_on_disk"] / 1e6, "encoder GFLOPs": e["encoder_gflops"]}
        for batch, t in e.get("latency", {}).items():
            row[f"{batch} ms"] = t["ms"]
            row[f"{batch} ex/s"] = t["examples_per_second"]
            row[f"{batch} speed-up"] = e[f"speedup_{batch}"]
        row["FLOP-bound speed-up"] = e["flop_speedup"]
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def plot_accuracy_vs_latency(metrics: dict, speed: dict, path: Path) -> bool:
    timed = [n for n in metrics if "latency" in speed[n]]
    if not timed:
        return False
    batch = max(speed[timed[0]]["latency"], key=lambda b: int(b.removeprefix("batch")))
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in timed:
        x, y = speed[name]["latency"][batch]["ms"], metrics[name]["accuracy"]["avg"]
        role = metrics[name]["role"]
        ax.scatter([x], [y], marker=BASELINES[role][0] if role in BASELINES else "o")
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"latency, {batch}, length 128 (ms, median)")
    ax.set_ylabel("average test accuracy (%)")
    ax.grid(alpha=0.3)
    save(fig, path)
    return True


def export_table(exported: dict) -> pd.DataFrame:
    """Every exported variant next to its PyTorch model: accuracy (the average, its change and
    the largest drop in one language), agreement, latency and speed-up per timed batch size,
    size with and without the word embeddings. Per-language figures: reports/export/."""
    rows = {}
    for item, r in exported["models"].items():
        reference = r["variants"]["pytorch-fp32"]["accuracy"]
        for variant, m in r["variants"].items():
            accuracy = m["accuracy"]
            row = {"avg": accuracy["avg"], "avg change": accuracy["avg"] - reference["avg"],
                   "worst language change": min(accuracy[k] - reference[k]
                                                for k in accuracy if k != "avg"),
                   "agreement %": m["agreement"]}
            for batch, t in m.get("latency", {}).items():
                row[f"{batch} ms"] = t["ms"]
                row[f"{batch} speed-up"] = m[f"speedup_{batch}"]
            row["MB"] = m["bytes_on_disk"] / 1e6
            row["MB without word embeddings"] = m["bytes_without_word_embeddings"] / 1e6
            rows[f"{r['model']} ({item}) {variant}"] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def vocabulary_note(exported: dict) -> str:
    """What export.vocabulary: seen kept, per exported model ("" when nothing was trimmed)."""
    kept = [f"{r['model']} ({item}) {v['tokens']} of {v['of']}"
            for item, r in exported["models"].items() if (v := r.get("vocabulary"))]
    if not kept:
        return ""
    return (" The ONNX variants keep the word embeddings of the tokens of the prepared train, "
            "dev, distill and transfer splits only (`export.vocabulary: seen`; any other token "
            f"reads as the unknown token): {', '.join(kept)} tokens.")


VARIANT_MARKERS = {"pytorch-fp32": "o", "onnx-fp32": "s"}  # quantised variants: "^"


def plot_export(exported: dict, path: Path) -> bool:
    """Average accuracy against latency, a panel per timed batch size: a colour per model, a
    marker per variant (PyTorch fp32, ONNX fp32, ONNX quantised)."""
    models = exported["models"]
    first = next(iter(models.values()))["variants"]["pytorch-fp32"]
    batches = sorted(first.get("latency", {}), key=lambda b: int(b.removeprefix("batch")))
    if not batches:
        return False
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 4), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        for i, (item, r) in enumerate(models.items()):
            points = [(m["latency"][batch]["ms"], m["accuracy"]["avg"], v)
                      for v, m in r["variants"].items()]
            ax.plot([p[0] for p in points], [p[1] for p in points], color=f"C{i}", lw=0.8,
                    alpha=0.5)
            for x, y, variant in points:
                ax.scatter([x], [y], color=f"C{i}", marker=VARIANT_MARKERS.get(variant, "^"),
                           label=f"{r['model']} ({item}) {variant}")
        ax.set_xlabel(f"latency, {batch} (ms, median)")
        ax.set_ylabel("average test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    save(fig, path)
    return True


def plot_languages(metrics: dict, path: Path) -> None:
    roles = {m["role"]: n for n, m in metrics.items()}
    shown = [roles[r] for r in ("teacher", "student", *BASELINES) if r in roles]
    langs = [k for k in metrics[shown[0]]["accuracy"] if k != "avg"]
    table = pd.DataFrame({n: [metrics[n]["accuracy"][lang] for lang in langs] for n in shown},
                         index=langs)
    ax = table.plot.bar(figsize=(max(6, len(langs) * 0.6), 4), rot=0)
    ax.set_ylabel("test accuracy (%)")
    ax.axhline(100 / 3, color="grey", lw=0.8, ls="--", label="chance")
    ax.legend(fontsize=8)
    save(ax.figure, path)


def plot_training(live: Path, params: dict, path: Path) -> None:
    """Loss curves of every distill and finetune stage of this cascade (from dvclive's files)."""
    runs = training_runs(params)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind in zip(axes, ("distill", "finetune")):
        for k, name in runs:
            tsv = live / k / name / "plots" / "metrics" / "train" / "loss.tsv"
            if k == kind and tsv.is_file():
                curve = pd.read_csv(tsv, sep="\t")
                ax.plot(curve.step, curve.loss, label=name, lw=1)
        ax.set_title(f"{kind} loss")
        ax.set_xlabel("optimizer step")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    save(fig, path)


def training_runs(params: dict) -> list[tuple[str, str]]:
    return ([("distill", n) for n in schedule.steps_of(params)]
            + [("finetune", n) for n in schedule.models_of(params)])


def training_table(live: Path, params: dict) -> pd.DataFrame:
    """Cost of every training stage, from its dvclive summary."""
    rows = {}
    for kind, name in training_runs(params):
        path = live / kind / name / "metrics.json"
        if path.is_file():
            m = json.loads(path.read_text())
            rows[f"{kind} {name}"] = {
                "optimizer steps": m.get("optimizer_steps"), "seconds": m.get("train_seconds"),
                "examples/s": m.get("examples_per_second"),
                "peak memory (MB)": m.get("peak_memory_mb"),
                "first-batch loss": m.get("first_batch_loss"),
                "best dev accuracy": m.get("best_dev_accuracy", "")}
    return pd.DataFrame.from_dict(rows, orient="index")


def data_table(summary: dict) -> pd.DataFrame:
    rows = {}
    for split, s in summary.items():
        balance = s["label_balance"] or {}
        rows[split] = {"rows": s["rows"], **{f"rows {k}": v for k, v in s["rows_per_language"].items()},
                       **{f"{k} %": round(100 * v, 1) for k, v in balance.items()},
                       "truncated %": round(100 * s["truncation_rate"], 2),
                       "mean tokens": s["mean_tokens"]}
    return pd.DataFrame.from_dict(rows, orient="index").astype(object).fillna("")


def headline(metrics: dict, speed: dict, data_summary: dict) -> dict:
    """The few numbers experiments are compared by, under the same short keys for any cascade
    (they are the column headers of `dvc exp show`).

    *_avg: unweighted average test accuracy (%) over the languages: of the teacher, the student,
    the truncated baseline (the teacher's bottom layers fine-tuned as the student is) and the
    plain baseline (the same layers fine-tuned on the labels alone); gain_vs_plain: student
    minus plain baseline (all that distillation adds); distill_gain: student minus truncated
    baseline (what general distillation and the cascade add to the task distillation both get);
    without the plain baseline (cascade.plain_baseline: false) plain_avg and gain_vs_plain are
    absent, not zero. retention: the student's average as % of the teacher's; speedup: the
    student's measured speed-up over the teacher at the largest timed batch ("not timed" with
    evaluate.timing_repeats: 0); params_m: the student's parameters in millions, embeddings
    included; test_pairs: test rows, all languages.
    """
    roles = {m["role"]: name for name, m in metrics.items()}
    avg = {role: metrics[name]["accuracy"]["avg"] for role, name in roles.items()}
    plain = "plain" in avg
    student = speed[roles["student"]]
    timed = sorted(student.get("latency", {}), key=lambda b: int(b.removeprefix("batch")))
    # averages are rounded to 2 decimals: each gain is exactly the difference of those shown
    return {"teacher_avg": avg["teacher"], "student_avg": avg["student"],
            "truncated_avg": avg["truncated"],
            **({"plain_avg": avg["plain"]} if plain else {}),
            "distill_gain": round(avg["student"] - avg["truncated"], 2),
            **({"gain_vs_plain": round(avg["student"] - avg["plain"], 2)} if plain else {}),
            "retention": metrics[roles["student"]]["retention"],
            "speedup": student[f"speedup_{timed[-1]}"] if timed else "not timed",
            "params_m": round(student["parameters"]["total"] / 1e6, 2),
            "languages": ",".join(k for k in metrics[roles["teacher"]]["accuracy"] if k != "avg"),
            "test_pairs": data_summary["test"]["rows"]}


def what_it_learns(params: dict, name: str) -> str:
    """In words, what a model learned in fine-tuning (cascade.learns_from, finetune)."""
    record = schedule.fine_tuning_of(params).get(name)
    if record is None:  # the teacher, the plain baseline
        return "the labels alone"
    signals = settings.teacher_signals(params["finetune"], True, record["transfer"],
                                       record["intermediate"])
    source = record["logits"]
    words = {"soft_labels": f"{source}'s soft labels",
             "transfer": f"{source}'s logits on the transfer pairs",
             "intermediate": "the teacher's hidden states"}
    learnt = ["the labels", *(words[k] for k, on in signals.items() if on)]
    if len(learnt) == 1:
        return "the labels alone"
    return ", ".join(learnt[:-1]) + " and " + learnt[-1]


def points(gain: float) -> str:
    """A gain with its sign, in numbers and words."""
    side = "above" if gain > 0 else "below" if gain < 0 else "level with"
    return f"{gain:+.2f} points ({side} it)"


def gains_sentence(top: dict, metrics: dict, params: dict) -> str:
    """What distillation adds, against each baseline: the sentence under the accuracy table."""
    roles = {m["role"]: name for name, m in metrics.items()}
    student, truncated = roles["student"], roles["truncated"]
    layers = metrics[student]["layers"]
    ours, theirs = what_it_learns(params, student), what_it_learns(params, truncated)
    if theirs == ours:
        adds = "what general distillation and the cascade add" + (
            "" if ours == "the labels alone" else " on top of the same task distillation")
    elif theirs == "the labels alone":
        adds = "what general distillation, the cascade and the student's task distillation add"
    else:
        adds = ("what general distillation and the cascade add, with the task distillation the "
                "baseline does not get")
    said = [f"**What distillation adds.** The student {student} learned {ours}."]
    if "gain_vs_plain" in top:
        said.append(f"Against the plain baseline {roles['plain']} (the teacher's bottom {layers} "
                    "layers fine-tuned on the labels alone: no distillation at all) it scores "
                    f"{points(top['gain_vs_plain'])}: all that distillation adds "
                    "(`gain_vs_plain`).")
    else:
        said.append("No plain baseline (`cascade.plain_baseline: false`): what distillation adds "
                    "over the labels alone is not measured.")
    said.append(f"Against the truncated baseline {truncated} (the same layers, never distilled, "
                f"fine-tuned on {theirs}) it scores {points(top['distill_gain'])}: {adds} "
                "(`distill_gain`).")
    return " ".join(said)


def accuracy_by_layers(metrics: dict) -> list[dict]:
    """Teacher, assistants and student by depth: one line per experiment in `dvc plots diff`."""
    return [{"model": name, "role": m["role"], "layers": m["layers"],
             "accuracy": m["accuracy"]["avg"]}
            for name, m in metrics.items() if m["role"] not in BASELINES]


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--eval", "--export", "--data", "--live", "--out"):
        ap.add_argument(flag, required=True)
    args = ap.parse_args()
    runtime.check_writable(args.out)
    params = runtime.load_params()
    names = list(schedule.models_of(params))
    path = Path(args.eval) / "metrics.json"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; run the evaluate stage first")
    metrics = json.loads(path.read_text())
    if list(metrics) != names:
        raise ConfigError(f"{path}: models {list(metrics)} are not this cascade's {names}")
    summary = json.loads((Path(args.data) / "summary.json").read_text())
    speed = json.loads((Path(args.eval) / "efficiency.json").read_text())
    export_path = Path(args.export) / "metrics.json"
    if not export_path.is_file():
        raise ConfigError(f"{export_path}: missing; run the export and evaluate-export stages "
                          "first")
    exported = json.loads(export_path.read_text())

    out = Path(args.out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plot_accuracy_vs_layers(metrics, plots / "accuracy_vs_layers.png")
    timed = plot_accuracy_vs_latency(metrics, speed, plots / "accuracy_vs_latency.png")
    plot_languages(metrics, plots / "languages.png")
    plot_training(Path(args.live), params, plots / "training.png")
    export_timed = plot_export(exported, plots / "export.png")
    top = headline(metrics, speed, summary)
    runtime.write_json(out / "summary.json", top)
    runtime.write_json(out / "accuracy_by_layers.json", accuracy_by_layers(metrics))

    c = params["cascade"]
    depths = " -> ".join([names[0]] + list(schedule.steps_of(params)))
    md = ["# Cascade distillation report\n",
          f"Cascade: {depths} ({c['steps']} distillation steps), teacher `{params['teacher']['name']}` "
          f"({params['teacher']['source']}), data source `{params['data']['source']}`, "
          f"seed {params['seed']}.\n",
          "## Test accuracy (%) per language\n",
          *(["**Test here is the held-out half of dev** (`data.test_from_dev: true`); the other "
             "half chose the checkpoints.\n"] if params["data"].get("test_from_dev") else []),
          "Zero-shot: fine-tuned on the train split only "
          f"({', '.join(params['data']['train_languages'])}), checkpoint chosen on dev "
          f"(`finetune.select_on: {params['finetune']['select_on']}`). `avg` is the unweighted "
          "mean over languages; retention is avg as % of the teacher's.\n",
          accuracy_table(metrics).to_markdown(floatfmt=".2f"), "\n",
          gains_sentence(top, metrics, params) + "\n",
          "![accuracy against layers](plots/accuracy_vs_layers.png)\n",
          "![teacher, student and baselines per language](plots/languages.png)\n",
          "## Efficiency\n",
          "Measured on this machine with random ids at length "
          f"{params['evaluate']['timing_length']}: median of {params['evaluate']['timing_repeats']} "
          "runs after 2 warm-up runs. Speed-ups are over the teacher; the FLOP bound is the ratio "
          "of encoder FLOPs (embeddings and head do not shrink with depth).\n",
          efficiency_table(speed).to_markdown(floatfmt=".2f"), "\n",
          *(["![accuracy against latency](plots/accuracy_vs_latency.png)\n"] if timed else []),
          "## Deployment: ONNX and int8\n",
          "Each model of `export.models` as PyTorch fp32, ONNX fp32 and ONNX Runtime's dynamic "
          f"quantisation (`export.quantization: {params['export']['quantization']}`, "
          f"`per_channel: {str(params['export']['per_channel']).lower()}`), all on the CPU with "
          f"{exported['threads']} thread(s), on the same test split. Changes (points) are "
          "against the same model in PyTorch, agreement is the % of test pairs predicted as "
          "PyTorch predicts them; latency at the shapes above, median of at least "
          f"{params['evaluate']['timing_repeats']} rounds (more until they took 2 s) after a "
          "warm-up round, every model and variant taking turns; speed-up over the same model in "
          "PyTorch. Sizes are the files on disk, then without "
          "the word-embedding matrix. Per-language accuracy: `reports/export/metrics.json`."
          f"{vocabulary_note(exported)}\n",
          export_table(exported).to_markdown(floatfmt=".2f"), "\n",
          *(["![accuracy against latency of the exported variants](plots/export.png)\n"]
            if export_timed else []),
          "## Training\n",
          "Throughput and peak memory (CPU: resident memory of the process) of each stage as it "
          "ran; a resumed stage counts only the steps after its checkpoint.\n",
          training_table(Path(args.live), params).to_markdown(floatfmt=".4g"), "\n",
          "![training curves](plots/training.png)\n",
          "## Data\n", data_table(summary).to_markdown(), "\n",
          "## Params\n", "```yaml\n" + yaml.safe_dump(params, sort_keys=False) + "```\n"]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    print(accuracy_table(metrics).to_string())


if __name__ == "__main__":
    runtime.main(run)
