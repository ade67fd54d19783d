"""Comparing experiments: flatten `dvc exp show --json`, group seeds, and say what is noise."""

import math

import pandas as pd

from .schedule import STORED

SUMMARY = "reports/summary.json"
# the metrics pooled over seeds; plain_avg and gain_vs_plain are absent from a run without the
# plain baseline (cascade.plain_baseline: false): pooled over the seeds that have them
HEADLINE = ("student_avg", "teacher_avg", "truncated_avg", "plain_avg", "distill_gain",
            "gain_vs_plain")
GAINS = ("distill_gain", "gain_vs_plain")  # student minus each baseline


def flatten(node: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def experiments(shown: list) -> pd.DataFrame:
    """One row per commit or experiment that has the pipeline's summary metrics.

    Columns: name, rev, every param (dotted, e.g. `cascade.steps`) and the headline metrics.
    The workspace row is skipped: it repeats the last run.
    """
    rows = []

    def add(entry):
        data = entry.get("data") or {}
        summary = ((data.get("metrics") or {}).get(SUMMARY) or {}).get("data")
        if entry.get("rev") == "workspace" or not summary:
            return
        params = flatten((data.get("params") or {}).get("params.yaml", {}).get("data", {}))
        # the computed schedule repeats cascade.steps; it would split otherwise equal groups
        params = {k: v for k, v in params.items()
                  if not k.startswith(tuple(f"cascade.{key}" for key in STORED))}
        rows.append({"name": entry.get("name") or entry["rev"][:7], "rev": entry["rev"],
                     **{k: str(v) if isinstance(v, list) else v for k, v in params.items()},
                     **{k: summary.get(k) for k in HEADLINE}})

    for commit in shown:
        add(commit)
        for group in commit.get("experiments") or []:
            for exp in group.get("revs", []):
                add(exp)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table[list(HEADLINE)] = table[list(HEADLINE)].apply(pd.to_numeric)  # absent: NaN
    # a commit and the experiment it was made from hold the same run: count it once
    return table.drop_duplicates([c for c in table.columns if c not in ("name", "rev")])


def group_seeds(table: pd.DataFrame, by: str = "cascade.steps") -> pd.DataFrame:
    """Mean, standard deviation and count over experiments that differ only in `seed`.

    Experiments that differ in any other param fall into separate groups, so a seed sweep of one
    config is never averaged with another config's runs.
    """
    params = [c for c in table.columns
              if c not in ("name", "rev", "seed", *HEADLINE) and table[c].nunique(dropna=False) > 1]
    keys = [by] + [p for p in params if p != by]
    grouped = table.groupby(keys, dropna=False)
    out = grouped[list(HEADLINE)].agg(["mean", "std", "count"])
    out.columns = [f"{metric} {stat}" for metric, stat in out.columns]
    out["seeds"] = grouped["seed"].apply(lambda s: ",".join(str(v) for v in sorted(s)))
    return out.reset_index().sort_values(keys)


def verdict(a_mean, a_std, a_n, b_mean, b_std, b_n) -> str:
    """Whether a difference of means stands out of seed noise (two standard errors)."""
    if a_n < 2 or b_n < 2:
        return "one seed: noise unknown"
    se = math.sqrt(a_std ** 2 / a_n + b_std ** 2 / b_n)
    return "within noise" if abs(a_mean - b_mean) <= 2 * se else "beyond noise (>2 SE)"


def against_reference(groups: pd.DataFrame, metric: str = "student_avg") -> pd.Series:
    """Each group's difference from the first group (e.g. steps=1, direct distillation)."""
    ref = groups.iloc[0]
    return groups.apply(lambda g: verdict(g[f"{metric} mean"], g[f"{metric} std"] or 0.0,
                                          g[f"{metric} count"], ref[f"{metric} mean"],
                                          ref[f"{metric} std"] or 0.0, ref[f"{metric} count"]),
                        axis=1)
