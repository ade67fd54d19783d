"""Several processes, gradient accumulation, checkpoints and resume, through the real stage scripts.

The teacher is a 3-layer cut of the real all-MiniLM-L6-v2 saved without dropout: processes draw
their own dropout masks, so "the same result" across process counts is defined without dropout.
"""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from safetensors.torch import load_file

from conftest import ROOT
from kdcascade import checkpoints, models
from kdcascade.compose import compose
from test_stage_errors import call_stage

TIMING = {"train_seconds", "examples_per_second", "peak_memory_mb"}


def stage(script, cwd, *args, background=False, process=False):
    """Run a stage script: in this process (runpy, as `python stages/<script>` would), or as a
    process of its own where it must be killed (`background`) or where what its launched workers
    print matters (`process`)."""
    cmd = [sys.executable, str(ROOT / "stages" / script), *map(str, args)]
    if background:
        return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    if process:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    else:
        out = call_stage(cwd, script, *args)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, minilm_path):
    """Params, a 3-layer teacher and prepared data (tiny preset), made by the real stages."""
    ws = tmp_path_factory.mktemp("scale")
    source = models.truncate(models.load_encoder(minilm_path), [0, 1, 2])
    source.config.hidden_dropout_prob = source.config.attention_probs_dropout_prob = 0.0
    source.save_pretrained(ws / "source")
    models.load_tokenizer(minilm_path).save_pretrained(ws / "source")
    compose(ws / "params.yaml", [
        "preset=tiny", "method=camembert", "teacher.source=local", f"teacher.name={ws / 'source'}",
        "teacher.layers=3", "cascade.student_layers=2", "cascade.steps=1",
        "distill.batch_size=8", "distill.checkpoint_every=3",
        "finetune.batch_size=8", "finetune.evals_per_epoch=3", "finetune.checkpoint_every=3",
        "finetune.soft_labels.weight=0", "distill.precision=fp32", "finetune.precision=fp32"])
    stage("teacher.py", ws, "--out", "models/L3", "--baseline-out", "models/L2-trunc")
    stage("prepare.py", ws, "--teacher", "models/L3", "--out", "prepared")
    return ws


def run_dir(ws, name, **edits) -> Path:
    """A folder with its own params.yaml (the workspace's, with `section.key` edits) and a link
    to the teacher."""
    d = ws / name
    if d.exists():
        shutil.rmtree(d)
    (d / "models").mkdir(parents=True)
    (d / "models" / "L3").symlink_to(ws / "models" / "L3")
    params = yaml.safe_load((ws / "params.yaml").read_text())
    for key, value in edits.items():
        section, name_ = key.split("__")
        params[section][name_] = value
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return d


DISTILL = ("--model", "L2", "--models", "models", "--live", "live", "--checkpoints", "ckpt")


def distill_args(ws):
    return (*DISTILL, "--data", ws / "prepared")


def finetune_args(ws):
    return ("--model", "L3", "--models", "models", "--data", ws / "prepared", "--out", "out",
            "--live", "live", "--checkpoints", "ckpt")


def logged(d, name="train/loss") -> list[float]:
    lines = (d / "live" / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()[1:]
    return [float(line.split("\t")[-1]) for line in lines]


def summary(d) -> dict:
    return {k: v for k, v in json.loads((d / "live" / "metrics.json").read_text()).items()
            if k not in TIMING}


@pytest.fixture(scope="module")
def one_process(workspace):
    d = run_dir(workspace, "one")
    stage("distill.py", d, *distill_args(workspace))
    return d


@pytest.mark.parametrize("edits", [{"distill__processes": 2},
                                   {"distill__gradient_accumulation": 2}],
                         ids=["2-processes", "2-accumulation-steps"])
def test_split_batches_reproduce_one_process(workspace, one_process, edits):
    """Each slice of a global batch is weighted by its share of the batch's tokens and token
    pairs, so 2 processes (gloo) or 2 accumulation steps give the one-process update; what
    remains is float rounding (other padding and summation order). Measured here: losses
    within 2e-7 relative over 16 steps, weights within 1.3e-6; the test allows 1e-5 for both
    (weighting every slice equally instead misses by 6% of the loss)."""
    d = run_dir(workspace, "split", **edits)
    stage("distill.py", d, *distill_args(workspace))
    for term in ("train/loss", "train/hidden_mse_0", "train/attention_mse_1"):
        assert logged(d, term) == pytest.approx(logged(one_process, term), rel=1e-5), term
    assert len(logged(d)) == 16
    ours = load_file(d / "models/L2/model.safetensors")
    ref = load_file(one_process / "models/L2/model.safetensors")
    worst = max((ours[k] - ref[k]).abs().max().item() for k in ref)
    assert worst < 1e-5
    provenance = json.loads((d / "models/L2/provenance.json").read_text())["params"]
    assert provenance["processes"] == edits.get("distill__processes", 1)


def kill_after_first_checkpoint(proc, folder: Path, timeout=120):
    deadline = time.time() + timeout
    while not list(folder.glob("step-*/meta.json")):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    # the whole tree: torchrun starts its workers in sessions of their own
    parent = psutil.Process(proc.pid)
    tree = [parent, *parent.children(recursive=True)]
    for victim in tree:
        victim.send_signal(signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(tree, timeout=30)


@pytest.mark.parametrize("processes", [1, 2])
def test_killed_distill_resumes_to_the_same_result(workspace, one_process, processes):
    """Killed after a checkpoint and run again: one process ends exactly where an uninterrupted
    run does; two processes (each restoring its own RNG) within the float rounding above."""
    d = run_dir(workspace, f"killed-{processes}", distill__processes=processes)
    proc = stage("distill.py", d, *distill_args(workspace), background=True)
    kill_after_first_checkpoint(proc, d / "ckpt")
    assert not (d / "models/L2").exists()  # nothing that could pass for a finished output
    out = stage("distill.py", d, *distill_args(workspace), process=processes > 1)
    assert "resuming from" in out
    provenance = json.loads((d / "models/L2/provenance.json").read_text())["params"]
    assert provenance["resumed_from_step"] >= 3 and provenance["processes"] == processes
    ours, ref = (load_file(x / "models/L2/model.safetensors") for x in (d, one_process))
    if processes == 1:
        assert summary(d) == summary(one_process)
        for term in ("train/loss", "train/attention_mse_1", "train/lr"):
            assert logged(d, term) == logged(one_process, term)
        assert all((ours[k] == ref[k]).all() for k in ref)
    else:
        assert logged(d) == pytest.approx(logged(one_process), rel=1e-5)
        assert max((ours[k] - ref[k]).abs().max().item() for k in ref) < 1e-5
    assert not (d / "ckpt").exists()  # removed once the outputs are written


def test_checkpoint_from_other_params_is_not_resumed(workspace):
    d = run_dir(workspace, "changed")
    proc = stage("distill.py", d, *distill_args(workspace), background=True)
    kill_after_first_checkpoint(proc, d / "ckpt")
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["distill"]["lr"] = 1e-4
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = stage("distill.py", d, *distill_args(workspace))
    assert "made from other params; starting over" in out and "resuming" not in out
    provenance = json.loads((d / "models/L2/provenance.json").read_text())["params"]
    assert provenance["resumed_from_step"] == 0 and provenance["distill"]["lr"] == 1e-4
    assert len(logged(d)) == 16


@pytest.fixture(scope="module")
def finetuned(workspace):
    ref = run_dir(workspace, "ft-ref")
    stage("finetune.py", ref, *finetune_args(workspace))
    return ref


def test_finetune_on_two_processes_matches_one(workspace, finetuned):
    """Dev accuracy is counted over both processes' halves of dev: the same checkpoint is
    chosen, and the losses agree to float rounding."""
    d = run_dir(workspace, "ft-two", finetune__processes=2)
    stage("finetune.py", d, *finetune_args(workspace))
    assert logged(d) == pytest.approx(logged(finetuned), rel=1e-5)
    assert logged(d, "dev/accuracy") == logged(finetuned, "dev/accuracy")
    ours, ref = summary(d), summary(finetuned)
    assert (ours["best_dev_accuracy"], ours["best_step"]) == (ref["best_dev_accuracy"],
                                                              ref["best_step"])


def test_length_split_batches_give_the_uncut_update(workspace):
    """split_by_length runs each batch as length-sorted micro-batches: at batch 32 the tiny
    train split's batches are cut, and the losses, dev choice and weights are those of the
    same batches run whole, to float rounding."""
    from kdcascade import batching, data
    train = data.read_split(workspace / "prepared", "train")
    plan = batching.BatchPlan(train, 32, 0, seed=0, split_overhead=batching.CPU_SPLIT_OVERHEAD)
    assert any(len(plan.micro_batches(b)) > 1 for b in plan.global_batches(0))
    runs = []
    for split in (True, False):
        d = run_dir(workspace, f"ft-split-{split}", finetune__split_by_length=split,
                    finetune__batch_size=32)
        stage("finetune.py", d, *finetune_args(workspace))
        runs.append(d)
    cut, whole = runs
    assert logged(cut) == pytest.approx(logged(whole), rel=1e-5)
    assert logged(cut, "dev/accuracy") == logged(whole, "dev/accuracy")
    ours, ref = (load_file(x / "out/model.safetensors") for x in runs)
    assert max((ours[k] - ref[k]).abs().max().item() for k in ref) < 1e-5


def test_intermediate_terms_on_two_processes_match_one(workspace, one_process, finetuned):
    """The distilled L2 fine-tuned with its layers matching the fine-tuned L3's (the stage
    loads it from --teacher-model): the term is logged, and each process's share of the tokens
    scales it, so two processes give one process's losses."""
    layers = {"objectives": [{"loss": "hidden_nmse", "map": "skip", "weight": 1.0}],
              "models": "all"}
    runs = []
    for processes in (1, 2):
        d = run_dir(workspace, f"ft-layers-{processes}", finetune__intermediate=layers,
                    finetune__processes=processes)
        (d / "models" / "L2").symlink_to(one_process / "models" / "L2")
        stage("finetune.py", d, "--model", "L2", "--models", "models", "--data",
              workspace / "prepared", "--out", "out", "--live", "live",
              "--teacher-model", finetuned / "out")
        runs.append(d)
    one, two = runs
    term = logged(one, "train/intermediate_hidden_nmse")
    assert len(term) == 12 and all(v > 0 for v in term)
    assert [a + b for a, b in zip(logged(one, "train/cross_entropy"), term)] == pytest.approx(
        logged(one), rel=1e-5)
    assert logged(two) == pytest.approx(logged(one), rel=1e-5)
    assert term == pytest.approx(logged(two, "train/intermediate_hidden_nmse"), rel=1e-5)


def test_killed_finetune_resumes_with_its_dev_choice(workspace, finetuned):
    ref = finetuned
    d = run_dir(workspace, "ft-killed")
    proc = stage("finetune.py", d, *finetune_args(workspace), background=True)
    kill_after_first_checkpoint(proc, d / "ckpt")
    assert "resuming from" in stage("finetune.py", d, *finetune_args(workspace))
    assert summary(d) == summary(ref)  # best dev accuracy and step, last losses
    assert logged(d, "dev/accuracy") == logged(ref, "dev/accuracy")
    ours, theirs = (load_file(x / "out/model.safetensors") for x in (d, ref))
    assert all((ours[k] == theirs[k]).all() for k in theirs)


def test_fingerprint_covers_params_inputs_and_code(tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"abc")
    first = checkpoints.make_fingerprint({"lr": 1e-4}, [data])
    assert checkpoints.make_fingerprint({"lr": 1e-4}, [data]) == first
    assert checkpoints.make_fingerprint({"lr": 2e-4}, [data])["params"] != first["params"]
    data.write_bytes(b"abd")
    changed = checkpoints.make_fingerprint({"lr": 1e-4}, [data])
    assert changed["inputs"] != first["inputs"] and changed["code"] == first["code"]
