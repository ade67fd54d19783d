"""End to end: the real `dvc repro` and `dvc exp run` in a temporary copy of the repo (tiny preset)."""

import json
import os
import shutil
import subprocess
import sys

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
    sh(sys.executable, "-m", "kdcascade.compose", "preset=tiny", cwd=dest / "stages")
    sh("git", "init", "-q", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-qm", "tiny", cwd=dest)
    return dest


def test_repro_then_experiment_with_another_step_count(repo):
    sh("dvc", "repro", cwd=repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    models = list(schedule.models_of(params))
    assert models == ["L6", "L5", "L4", "L4-trunc"]
    metrics = json.loads((repo / "reports/eval/metrics.json").read_text())
    assert list(metrics) == models
    for m in metrics.values():
        assert set(m["accuracy"]) == {"en", "de", "fr", "es", "avg"}
        assert 0 <= m["accuracy"]["avg"] <= 100
    for name in models:
        assert (repo / "data/finetuned" / name / "config.json").is_file()
    # the tiny preset turns on soft labels: every student learnt from the teacher's logits
    for name in models[1:]:
        live = json.loads((repo / f"reports/live/finetune/{name}/metrics.json").read_text())
        assert live["train"]["soft_label_kl"] >= 0 and "cross_entropy" in live["train"]
    for name in ("L5", "L4"):
        live = json.loads((repo / f"reports/live/distill/{name}/metrics.json").read_text())
        assert live["train"]["hidden_mse"] >= 0 and live["first_batch_loss"] > 0
        saved = json.loads((repo / f"data/models/{name}/config.json").read_text())
        assert saved["num_hidden_layers"] == int(name[1:])
    report = (repo / "reports/report.md").read_text()
    assert "L4-trunc (truncated)" in report and "## Data" in report
    assert (repo / "reports/plots/accuracy_vs_layers.png").stat().st_size > 1000

    # nothing changed: nothing reruns
    assert "Running stage" not in sh("dvc", "repro", cwd=repo)
    assert "changed" not in sh("dvc", "status", cwd=repo)

    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "baseline", cwd=repo)
    # direct distillation, its one step spread over 2 processes by the stage itself
    out = sh("dvc", "exp", "run", "-n", "direct", "-S", "preset=tiny", "-S", "cascade.steps=1",
             "-S", "distill.processes=2", cwd=repo)
    # only the stages downstream of the changed schedule ran again
    assert "Running stage 'distill@L4'" in out
    assert "Running stage 'finetune-teacher'" not in out and "Running stage 'prepare'" not in out
    composed = yaml.safe_load((repo / "params.yaml").read_text())
    assert composed["cascade"]["distilled_from"] == [{"L4": "L6"}]
    provenance = json.loads((repo / "data/models/L4/provenance.json").read_text())["params"]
    assert provenance["processes"] == 2 and provenance["resumed_from_step"] == 0
    assert not (repo / "data/checkpoints/distill/L4").exists()

    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=repo))
    exps = {exp.get("name"): exp for row in shown for exp in [row] + [e for rs in row.get(
        "experiments") or [] for e in rs["revs"]]}
    assert "direct" in exps
    def avg_student(exp):
        data = exp["data"]["metrics"]["reports/eval/metrics.json"]["data"]
        return data["L4"]["accuracy"]["avg"], list(data)
    student, listed = avg_student(exps["direct"])
    assert listed == ["L6", "L4", "L4-trunc"]  # no leftovers of the longer cascade
