"""Stale dvc.lock entries: found by DVC's own reading of dvc.yaml, removed without touching the rest."""

import subprocess
import sys

import yaml

from conftest import ROOT
from kdcascade import lockfile

PIPELINE = """stages:
  distill:
    foreach: ${chain[0]}
    do:
      cmd: echo ${key} from ${item}
  report:
    cmd: echo report
"""


def entry(cmd):
    return {"cmd": cmd, "deps": [{"path": "x", "hash": "md5", "md5": "0" * 32, "size": 1}]}


def make_repo(tmp_path):
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path,
                   check=True)
    (tmp_path / "params.yaml").write_text("chain:\n- {L4: L6}\n")
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    lock = {"schema": "2.0", "stages": {
        "distill@L5": entry("echo L5 from L6"), "distill@L4": entry("echo L4 from L5"),
        "report": entry("echo report"), "finetune@L5": entry("python finetune.py")}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    return lock


def test_stale_entries_are_the_stages_dvc_no_longer_defines(tmp_path):
    lock = make_repo(tmp_path)
    assert lockfile.pipeline_stages(tmp_path) == {"distill@L4", "report"}
    assert lockfile.stale_entries(tmp_path) == ["distill@L5", "finetune@L5"]

    assert lockfile.prune(tmp_path) == ["distill@L5", "finetune@L5"]
    kept = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    assert kept == {"schema": "2.0",
                    "stages": {k: lock["stages"][k] for k in ("distill@L4", "report")}}
    assert lockfile.prune(tmp_path) == []


def test_the_check_fails_with_one_line_naming_the_fix(tmp_path):
    make_repo(tmp_path)
    script = str(ROOT / "stages" / "prune_lock.py")
    out = subprocess.run([sys.executable, script, "--check", "--root", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "dvc.lock: entries of stages not in dvc.yaml: distill@L5, finetune@L5; "
        "remove them with `python stages/prune_lock.py`"]
