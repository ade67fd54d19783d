"""Bad input ends a stage with one line naming what is wrong, exit status 2, and no output."""

import contextlib
import io
import os
import runpy
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, read_split_frame, write_split
from kdcascade.compose import compose


def run_stage(cwd, script, *args):
    """The stage script as its own process: the command line, imports and exit status."""
    return subprocess.run([sys.executable, str(ROOT / "stages" / script), *args], cwd=cwd,
                          capture_output=True, text=True)


def call_stage(cwd, script, *args):
    """The stage script run in this process, as `python stages/<script>` runs it (runpy, as
    __main__), with what it printed and its exit status: the same code as run_stage without
    a new interpreter importing torch each time."""
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    argv, here = sys.argv, os.getcwd()
    sys.argv = [str(ROOT / "stages" / script), *map(str, args)]
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    finally:
        sys.argv = argv
        os.chdir(here)
    return subprocess.CompletedProcess(sys.argv, code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture
def workdir(tmp_path):
    compose(tmp_path / "params.yaml", [])
    return tmp_path


def edit_params(workdir, change):
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    change(params)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def assert_one_line_error(out, *words):
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for word in words:
        assert word in lines[0]


def test_distill_without_prepared_data(workdir):
    out = call_stage(workdir, "distill.py", "--model", "L5", "--models", "models", "--data", "prep",
                    "--live", "live")
    assert_one_line_error(out, "prep/distill.arrow", "prepare")
    assert not (workdir / "models" / "L5").exists()


def test_teacher_with_a_bad_init(workdir):
    edit_params(workdir, lambda p: p["distill"].update(init="middle"))
    out = call_stage(workdir, "teacher.py", "--out", "m/L6", "--baseline-out", "m/L3-trunc")
    assert_one_line_error(out, "distill.init='middle'")
    assert not (workdir / "m").exists()


def test_a_hand_edited_schedule(workdir):
    edit_params(workdir, lambda p: p["cascade"].update(steps=1))
    out = run_stage(workdir, "finetune.py", "--model", "L6", "--models", "m", "--data", "d",
                    "--out", "o", "--live", "l")
    assert_one_line_error(out, "cascade.distilled_from/cascade.learns_from do not match")


def test_prepare_with_an_unknown_language(workdir, minilm_path):
    edit_params(workdir, lambda p: p["data"].update(languages=["en", "xx"]))
    out = call_stage(workdir, "prepare.py", "--teacher", minilm_path, "--out", "prepared")
    assert_one_line_error(out, "data.languages", "'xx'")
    assert not (workdir / "prepared").exists()


def test_a_batch_too_small_for_the_processes_fails_before_any_process_starts(workdir):
    edit_params(workdir, lambda p: p["distill"].update(batch_size=4, processes=2,
                                                       gradient_accumulation=4))
    out = call_stage(workdir, "distill.py", "--model", "L5", "--models", "m", "--data", "d",
                    "--live", "l")
    assert_one_line_error(out, "distill.batch_size=4: expected at least processes x "
                               "gradient_accumulation = 8")
    assert not (workdir / "m").exists() and not (workdir / "l").exists()


def test_cuda_without_a_gpu(workdir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    edit_params(workdir, lambda p: p["finetune"].update(device="cuda"))
    out = call_stage(workdir, "finetune.py", "--model", "L6", "--models", "m", "--data", "d",
                    "--out", "o", "--live", "l")
    assert_one_line_error(out, "finetune.device='cuda': no CUDA device is visible")


def test_transfer_without_pairs_or_with_a_bad_weight(workdir):
    import pandas as pd

    prep = workdir / "d"
    prep.mkdir()
    for split in ("train", "dev"):
        write_split(pd.DataFrame({"language": ["en"] * 2, "premise": ["a", "b"],
                                  "hypothesis": ["c", "d"], "label": [0, 1],
                                  "input_ids": [[1, 2], [1, 3]],
                                  "token_type_ids": [[0, 1], [0, 1]]}), prep / f"{split}.arrow")
    write_split(pd.DataFrame({"language": [], "premise": [], "hypothesis": [], "input_ids": [],
                              "token_type_ids": []}), prep / "transfer.arrow")
    args = ("--model", "L5", "--models", "m", "--data", "d", "--out", "o", "--live", "l",
            "--teacher-logits", "t")
    edit_params(workdir, lambda p: p["finetune"].update(transfer={"weight": 1.0}))
    out = call_stage(workdir, "finetune.py", *args)
    assert_one_line_error(out, "finetune.transfer.weight=1.0", "d/transfer.arrow has no pairs",
                          "data.transfer_corpus")
    edit_params(workdir, lambda p: p["finetune"].update(transfer={"weight": -2}))
    assert_one_line_error(call_stage(workdir, "finetune.py", *args), "transfer.weight=-2")
    assert not (workdir / "o").exists() and not (workdir / "l").exists()


def test_stale_teacher_logits(workdir):
    """Logits computed from other data than the student's own train split are refused before
    any model loads."""
    import numpy as np
    import pandas as pd

    from kdcascade import teacher_logits

    prep, logits = workdir / "d", workdir / "t"
    prep.mkdir()
    logits.mkdir()
    for split in ("train", "dev"):
        write_split(pd.DataFrame({"language": ["en"] * 2, "premise": ["a", "b"],
                                  "hypothesis": ["c", "d"], "label": [0, 1],
                                  "input_ids": [[1, 2], [1, 3]],
                                  "token_type_ids": [[0, 1], [0, 1]]}), prep / f"{split}.arrow")
    other = write_split(read_split_frame(prep / "train.arrow").iloc[::-1], prep / "other.arrow")
    teacher_logits.write(logits, "L6", {"train": (other, np.zeros((2, 3)))})
    edit_params(workdir, lambda p: p["finetune"].update(transfer={"weight": 0.0}))
    out = call_stage(workdir, "finetune.py", "--model", "L5", "--models", "m", "--data", "d",
                     "--out", "o", "--live", "l", "--teacher-logits", "t")
    assert_one_line_error(out, "t/train.npy: computed from another d/train.arrow",
                          "finetune-teacher")
    assert not (workdir / "o").exists() and not (workdir / "l").exists()


def test_intermediate_terms_need_the_finetuned_teacher(workdir):
    """Before any model loads: the fine-tuned teacher's folder must be given and be one."""
    layers = {"objectives": [{"loss": "hidden_nmse", "map": "skip"}], "models": "all"}
    edit_params(workdir, lambda p: p["finetune"].update(intermediate=layers))
    args = ("--model", "L5", "--models", "m", "--data", "d", "--out", "o", "--live", "l")
    assert_one_line_error(call_stage(workdir, "finetune.py", *args),
                          "finetune.intermediate.objectives: needs --teacher-model")
    assert_one_line_error(call_stage(workdir, "finetune.py", *args, "--teacher-model", "ft"),
                          "ft: no config.json; expected a fine-tuned model folder")
    edit_params(workdir, lambda p: p["finetune"].update(intermediate={**layers, "models": "x"}))
    assert_one_line_error(call_stage(workdir, "finetune.py", *args),
                          "finetune.intermediate.models='x'")
    assert not (workdir / "o").exists() and not (workdir / "l").exists()
