"""Stage `report`: a markdown report and plots a person reads.

    python stages/report.py --eval reports/eval --data data/prepared --out reports

Writes reports/report.md, reports/plots/accuracy_vs_layers.png and reports/summary.json
(the headline numbers: teacher, student and truncation-baseline averages).
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from kdcascade import runtime, schedule  # noqa: E402
from kdcascade.errors import ConfigError  # noqa: E402


def accuracy_table(metrics: dict) -> pd.DataFrame:
    rows = {f"{name} ({m['role']})": {**m["accuracy"], "retention %": m["retention"]}
            for name, m in metrics.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def plot_accuracy_vs_layers(metrics: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    cascade = [(m["layers"], m["accuracy"]["avg"]) for m in metrics.values()
               if m["role"] != "truncated"]
    ax.plot(*zip(*cascade), marker="o", label="cascade (teacher, assistants, student)")
    for name, m in metrics.items():
        if m["role"] == "truncated":
            ax.scatter([m["layers"]], [m["accuracy"]["avg"]], marker="x", s=60, color="C3",
                       label=f"{name}: truncated, not distilled")
    ax.set_xlabel("encoder layers")
    ax.set_ylabel("average test accuracy over languages (%)")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def data_table(summary: dict) -> pd.DataFrame:
    rows = {}
    for split, s in summary.items():
        balance = s["label_balance"] or {}
        rows[split] = {"rows": s["rows"], **{f"rows {k}": v for k, v in s["rows_per_language"].items()},
                       **{f"{k} %": round(100 * v, 1) for k, v in balance.items()},
                       "truncated %": round(100 * s["truncation_rate"], 2),
                       "mean tokens": s["mean_tokens"]}
    return pd.DataFrame.from_dict(rows, orient="index").astype(object).fillna("")


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--eval", "--data", "--out"):
        ap.add_argument(flag, required=True)
    args = ap.parse_args()
    params = runtime.load_params()
    schedule.check_params(params)
    path = Path(args.eval) / "metrics.json"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; run the evaluate stage first")
    metrics = json.loads(path.read_text())
    names = list(params["cascade"]["models"])
    if list(metrics) != names:
        raise ConfigError(f"{path}: models {list(metrics)} do not match cascade.models {names}")
    summary = json.loads((Path(args.data) / "summary.json").read_text())

    out = Path(args.out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    plot_accuracy_vs_layers(metrics, out / "plots" / "accuracy_vs_layers.png")
    roles = {m["role"]: name for name, m in metrics.items()}
    headline = {f"{role}_avg": metrics[roles[role]]["accuracy"]["avg"]
                for role in ("teacher", "student", "truncated")}
    headline["student_retention"] = metrics[roles["student"]]["retention"]
    headline["distillation_gain"] = round(headline["student_avg"] - headline["truncated_avg"], 2)
    runtime.write_json(out / "summary.json", headline)

    c = params["cascade"]
    depths = " -> ".join([names[0]] + list(c["schedule"]))
    md = [f"# Cascade distillation report\n",
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
          f"Distillation gain of the student over the truncated baseline: "
          f"{headline['distillation_gain']:+.2f} points.\n",
          "![accuracy against layers](plots/accuracy_vs_layers.png)\n",
          "## Data\n", data_table(summary).to_markdown(), "\n",
          "## Params\n", "```yaml\n" + yaml.safe_dump(params, sort_keys=False) + "```\n"]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    print(accuracy_table(metrics).to_string())


if __name__ == "__main__":
    runtime.main(run)
