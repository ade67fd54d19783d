"""End to end: the real `dvc repro` and `dvc exp run` in a temporary copy of the repo (tiny preset)."""

import io
import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import ROOT
from kdcascade import schedule

pytestmark = pytest.mark.e2e


ENV = {**os.environ, "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
       "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
       "DVC_NO_ANALYTICS": "1"}


def sh(*cmd, cwd):
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A fresh git repo holding the project's files, with the tiny preset composed."""
    dest = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        # the project's files only: not a lock or reports left by a run in this checkout
        if (ROOT / rel).is_file() and rel != "dvc.lock" and not rel.startswith("reports/"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    sh(sys.executable, "-m", "kdcascade.compose", "preset=tiny", "cascade.logits_from=predecessor",
       cwd=dest / "stages")
    sh("git", "init", "-q", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-qm", "tiny", cwd=dest)
    return dest


def test_repro_then_experiment_with_another_step_count(repo):
    sh("dvc", "repro", cwd=repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    models = list(schedule.models_of(params))
    assert models == ["L6", "L5", "L4", "L4-trunc", "L4-plain"]
    metrics = json.loads((repo / "reports/eval/metrics.json").read_text())
    assert list(metrics) == models
    for m in metrics.values():
        assert set(m["accuracy"]) == {"en", "de", "fr", "es", "avg"}
        assert 0 <= m["accuracy"]["avg"] <= 100
    for name in models:
        assert (repo / "data/finetuned" / name / "config.json").is_file()
    # the tiny preset turns on soft labels: every student learnt from logits, with
    # logits_from=predecessor the assistant's for the student, the teacher's for the others
    for name in models[1:-1]:
        live = json.loads((repo / f"reports/live/finetune/{name}/metrics.json").read_text())
        assert live["train"]["soft_label_kl"] >= 0 and "cross_entropy" in live["train"]
    # ... but the plain baseline, fine-tuned on the labels alone (no term but the loss logged)
    live = json.loads((repo / "reports/live/finetune/L4-plain/metrics.json").read_text())
    assert "soft_label_kl" not in live["train"] and live["train"]["loss"] > 0
    assert not (repo / "data/logits/L4-plain").exists()
    shared = {name: json.loads((repo / f"data/logits/{name}/sources.json").read_text())
              for name in models[:-1]}
    assert {name: (s["model"], list(s["splits"])) for name, s in shared.items()} == {
        "L6": ("L6", ["train"]), "L5": ("L5", ["train"]), "L4": ("L4", []),
        "L4-trunc": ("L4-trunc", [])}
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert "--teacher-logits data/logits/L5" in lock["finetune@L4"]["cmd"]
    for name in ("L5", "L4"):
        live = json.loads((repo / f"reports/live/distill/{name}/metrics.json").read_text())
        assert live["train"]["hidden_mse"] >= 0 and live["first_batch_loss"] > 0
        saved = json.loads((repo / f"data/models/{name}/config.json").read_text())
        assert saved["num_hidden_layers"] == int(name[1:])
    report = (repo / "reports/report.md").read_text()
    assert "L4-trunc (truncated)" in report and "## Data" in report
    # the student exported (export.models: [student]) and measured next to PyTorch
    exported = json.loads((repo / "reports/export/metrics.json").read_text())
    variants = exported["models"]["student"]["variants"]
    assert exported["models"]["student"]["model"] == "L4"
    assert list(variants) == ["pytorch-fp32", "onnx-fp32", "onnx-int8"]
    assert variants["onnx-fp32"]["agreement"] == 100.0
    assert (repo / "data/exported/student/model.int8.onnx").is_file()
    assert "## Deployment: ONNX and int8" in report and "L4 (student) onnx-int8" in report
    assert (repo / "reports/plots/accuracy_vs_layers.png").stat().st_size > 1000
    summary = json.loads((repo / "reports/summary.json").read_text())
    assert list(summary) == list(HEADLINE)
    assert summary["student_avg"] == metrics["L4"]["accuracy"]["avg"]
    assert summary["plain_avg"] == metrics["L4-plain"]["accuracy"]["avg"]
    assert summary["gain_vs_plain"] == round(summary["student_avg"] - summary["plain_avg"], 2)
    assert "`gain_vs_plain`" in report and "L4-plain (plain)" in report
    assert summary["languages"] == "en,de,fr,es" and summary["test_pairs"] == 4 * 24
    by_layers = json.loads((repo / "reports/accuracy_by_layers.json").read_text())
    assert [(r["model"], r["layers"]) for r in by_layers] == [("L6", 6), ("L5", 5), ("L4", 4)]
    assert set(lock_stages(repo / "dvc.lock")) == set(
        sh("dvc", "stage", "list", "--name-only", cwd=repo).split())

    # nothing changed: nothing reruns
    assert "Running stage" not in sh("dvc", "repro", cwd=repo)
    assert "changed" not in sh("dvc", "status", cwd=repo)
    # a change reruns exactly the stages it affects (then the change is undone)
    sh(sys.executable, "-m", "kdcascade.compose", "preset=tiny", "cascade.logits_from=predecessor",
       "finetune.transfer.models=distilled", cwd=repo / "stages")
    assert changed_stages(repo) == {"finetune@L4-trunc", "report"}  # not the teacher's, student's
    sh("git", "checkout", "params.yaml", cwd=repo)
    runs = {name for name, s in yaml.safe_load((repo / "dvc.lock").read_text())["stages"].items()
            if any(d["path"] == "stages/kdcascade/classify.py" for d in s.get("deps", []))}
    assert {"evaluate", "finetune-teacher", "finetune@L4", "finetune-plain@L4-plain"} <= runs
    for code, expected in (("stages/kdcascade/classify.py", runs),
                           ("stages/report.py", {"report"})):
        with open(repo / code, "a") as f:
            f.write("# a one-line change\n")
        assert changed_stages(repo) == expected, code
        sh("git", "checkout", code, cwd=repo)
    assert "changed" not in sh("dvc", "status", cwd=repo)

    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "baseline", cwd=repo)
    # direct distillation at another lr (several processes per stage: tests/test_scale.py)
    out = sh("dvc", "exp", "run", "-n", "direct", "-S", "preset=tiny", "-S", "cascade.steps=1",
             "-S", "distill.lr=0.0003", cwd=repo)
    # only the stages downstream of the changed schedule ran again
    assert "Running stage 'distill@L4'" in out
    assert "Running stage 'finetune-teacher'" not in out and "Running stage 'prepare'" not in out
    composed = yaml.safe_load((repo / "params.yaml").read_text())
    assert composed["cascade"]["distilled_from"] == [{"L4": "L6"}]
    # the teacher's logits again (logits_from back to the default): its stage did not rerun
    assert schedule.learns_from_of(composed) == {"L4": "L6", "L4-trunc": "L6"}
    provenance = json.loads((repo / "data/models/L4/provenance.json").read_text())["params"]
    assert provenance["distill"]["lr"] == 0.0003 and provenance["resumed_from_step"] == 0
    assert not (repo / "data/checkpoints/distill/L4").exists()
    metrics = json.loads((repo / "reports/eval/metrics.json").read_text())
    assert list(metrics) == ["L6", "L4", "L4-trunc", "L4-plain"]  # none of the longer cascade

    # the lock holds exactly the stages of the shorter cascade, in the workspace and in the
    # experiment's commit: the prune-lock stage removed distill@L5 and finetune@L5
    assert "dvc.lock: removed distill@L5, finetune@L5" in out
    stages = set(sh("dvc", "stage", "list", "--name-only", cwd=repo).split())
    assert {"distill@L4", "finetune@L4", "finetune@L4-trunc", "finetune-plain@L4-plain",
            "export@student", "evaluate-export", "prune-lock"} <= stages
    assert not stages & {"distill@L5", "finetune@L5"}
    assert set(lock_stages(repo / "dvc.lock")) == stages
    sh(sys.executable, "stages/prune_lock.py", "--check", cwd=repo)

    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=repo))
    baseline = next(row for row in shown if row["rev"] != "workspace")
    direct = next(e for rs in baseline["experiments"] for e in rs["revs"] if e["name"] == "direct")
    committed = sh("git", "show", f"{direct['rev']}:dvc.lock", cwd=repo)
    assert set(yaml.safe_load(committed)["stages"]) == stages

    # `dvc exp show` compares the two cascades on the same columns: the headline metrics (the
    # only DVC metrics) and the params, the computed schedule as one column each
    columns = {}
    for name, exp in (("baseline", baseline), ("direct", direct)):
        data = exp["data"]
        assert list(data["metrics"]) == ["reports/summary.json"], name
        cells = {**leaves(data["metrics"]), **leaves(data["params"])}
        assert set(cells) >= {f"reports/summary.json:{k}" for k in HEADLINE}, name
        assert not [c for c in cells if re.search(r"\bL\d+\b", c)], name  # no column per model
        columns[name] = cells
    assert set(columns["baseline"]) == set(columns["direct"])
    metric_columns = [c for c in columns["direct"] if c.startswith("reports/")]
    assert len(metric_columns) == len(HEADLINE)
    # DVC lists every leaf of params.yaml; what differs between the two is what was varied
    varied = [c for c in columns["direct"] if columns["direct"][c] != columns["baseline"][c]
              and not c.startswith("reports/")]
    assert set(varied) <= {"params.yaml:cascade.steps", "params.yaml:cascade.distilled_from",
                           "params.yaml:cascade.learns_from", "params.yaml:cascade.logits_from",
                           "params.yaml:distill.lr"}
    # the README's two tables, as DVC prints them: what was varied and what came out, and the
    # headline with the step count; both fit on a screen
    params = {c.split(":", 1)[1] for c in columns["direct"] if c.startswith("params.yaml:")}
    for flags, expected in (
            (["--only-changed", "--drop", ".*/"],
             {"cascade.steps", "cascade.distilled_from", "distill.lr"}),
            (["--drop", ".*[./]|Created", "--keep", r"cascade\.steps"],
             set(HEADLINE) | {"seed", "cascade.steps"})):
        table = pd.read_csv(io.StringIO(sh("dvc", "exp", "show", "--csv", *flags, cwd=repo)))
        cols = [c for c in table.columns if c in params or c in HEADLINE]
        assert set(cols) >= expected, flags
        assert set(table.columns) - set(cols) <= EXPERIMENT_COLUMNS, flags
        assert len(cols) <= 30 and "direct" in set(table["Experiment"].dropna()), flags
    assert len(table.columns) <= 20  # the headline table, DVC's own columns included

    # the seed-pooling view reads the same numbers
    (repo / "shown.json").write_text(json.dumps(shown))
    sh(sys.executable, "stages/compare.py", "--json", "shown.json", "--out", "compared", cwd=repo)
    compared = pd.read_csv(repo / "compared" / "experiments.csv")
    row = compared.set_index("name").loc["direct"]
    summary = direct["data"]["metrics"]["reports/summary.json"]["data"]
    assert row["student_avg"] == summary["student_avg"] and row["cascade.steps"] == 1


# what `dvc exp show --csv` puts before the metrics and params
EXPERIMENT_COLUMNS = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}

HEADLINE = ("teacher_avg", "student_avg", "truncated_avg", "plain_avg", "distill_gain",
            "gain_vs_plain", "retention", "speedup", "params_m", "languages", "test_pairs")


def leaves(files: dict) -> dict:
    """`file:dotted.key` -> value of every leaf, as `dvc exp show` makes its columns."""
    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value
    return {f"{path}:{key}": value for path, entry in files.items()
            for key, value in walk(entry.get("data") or {}, "")}


def changed_stages(repo) -> set:
    """The stages `dvc status` says changed."""
    return set(json.loads(sh("dvc", "status", "--json", cwd=repo) or "{}"))


def lock_stages(path) -> list:
    return list(yaml.safe_load(path.read_text())["stages"])
