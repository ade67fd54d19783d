"""Compare experiments: the student's accuracy and its gains over both baselines, seeds pooled.

    python stages/compare.py                        # reads `dvc exp show --json` of this repo
    python stages/compare.py --json shown.json      # or a saved copy of it
    python stages/compare.py --by distill.init      # group by another param

Writes reports/compare/comparison.md, comparison.csv and student_vs_<param>.png. Experiments that
differ only in `seed` are one group (mean and standard deviation); each group is compared with
the first (by default steps=1, direct distillation) and told whether the gap is within seed noise.
Both gains are pooled too: over the truncated baseline (distill_gain) and over the plain one
(gain_vs_plain, from the runs that had it).
"""

import argparse
import json
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kdcascade import compare, runtime  # noqa: E402
from kdcascade.errors import ConfigError  # noqa: E402


def load_shown(path: str | None) -> list:
    if path:
        return json.loads(Path(path).read_text())
    out = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise ConfigError(f"`dvc exp show --json` failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="a saved `dvc exp show --json` output")
    ap.add_argument("--by", default="cascade.steps", help="the param on the x axis")
    ap.add_argument("--out", default="reports/compare")
    args = ap.parse_args()
    table = compare.experiments(load_shown(args.json))
    if table.empty:
        raise ConfigError("no experiment has reports/summary.json yet; run `dvc exp run` first")
    if args.by not in table:
        raise ConfigError(f"--by {args.by}: not a param of these experiments")
    groups = compare.group_seeds(table, args.by)
    groups["student vs first group"] = compare.against_reference(groups)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "experiments.csv", index=False)
    groups.to_csv(out / "comparison.csv", index=False)
    fig, ax = plt.subplots(figsize=(6, 4))
    for metric, style in (("student_avg", "o-"), ("truncated_avg", "x--"), ("plain_avg", "+-."),
                          ("teacher_avg", "s:")):
        if groups[f"{metric} count"].sum() == 0:  # no run had the plain baseline
            continue
        ax.errorbar(groups[args.by].astype(str), groups[f"{metric} mean"],
                    yerr=groups[f"{metric} std"].fillna(0), fmt=style, capsize=3, label=metric)
    ax.set_xlabel(args.by)
    ax.set_ylabel("average test accuracy (%), mean ± sd over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"student_vs_{args.by}.png", dpi=120)
    shown = ["name", args.by, "seed", *compare.HEADLINE]
    # mean and sd of the student and of both gains, the means of the others
    kept = {"student_avg count", *(f"{m} std" for m in ("student_avg", *compare.GAINS))}
    summary = groups[[c for c in groups.columns
                      if not c.endswith((" std", " count")) or c in kept]]
    md = ["# Experiments compared\n", table[shown].to_markdown(index=False, floatfmt=".2f"), "\n",
          f"## Grouped by {args.by} (seeds pooled)\n",
          summary.to_markdown(index=False, floatfmt=".2f"), "\n",
          f"![student against {args.by}](student_vs_{args.by}.png)\n"]
    (out / "comparison.md").write_text("\n".join(md), encoding="utf-8")
    print(summary.to_string(index=False))


if __name__ == "__main__":
    runtime.main(run)
