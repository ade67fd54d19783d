"""The last bad inputs that used to slip through: each ends its stage with one `error:` line,
exit status 2 and nothing at the stage's outputs (issue 14)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, Recorder
from kdcascade import data, runtime, schedule, settings, sources, training
from kdcascade.batching import MicroBatch
from kdcascade.compose import compose
from kdcascade.errors import ConfigError, Diverged
from kdcascade.objectives import check_terms
from test_stage_errors import assert_one_line_error, call_stage, edit_params, run_stage

def tiny(params):
    """A few rows, fp32 on CPU: each stage runs in seconds."""
    params["data"].update(languages=["en"], max_length=32,
                          sizes={"train": 16, "dev": 8, "test": 8, "distill": 8, "transfer": 8})
    for stage in ("distill", "finetune"):
        params[stage].update(batch_size=4, warmup=0.0, precision="fp32", device="cpu",
                             checkpoint_every=0)


@pytest.fixture(scope="module")
def ready(tmp_path_factory, minilm_path):
    """Params composed once, MiniLM as the teacher L6 and data prepared from it."""
    root = tmp_path_factory.mktemp("ready")
    compose(root / "params.yaml", [])
    edit_params(root, tiny)
    (root / "m").mkdir()
    (root / "m" / "L6").symlink_to(minilm_path)
    out = call_stage(root, "prepare.py", "--teacher", "m/L6", "--out", "prep")
    assert out.returncode == 0, out.stderr
    return root


@pytest.fixture
def workdir(ready, tmp_path):
    """A run folder of its own (params, models, outputs) reading the prepared data."""
    shutil.copy(ready / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "L6").symlink_to(ready / "m" / "L6")
    (tmp_path / "prep").symlink_to(ready / "prep")
    return tmp_path


def distill(workdir, *extra, run=call_stage):
    return run(workdir, "distill.py", "--model", "L5", "--models", "m", "--data", "prep",
                     "--live", "live/L5", *extra)


def finetune(workdir, *extra):
    return call_stage(workdir, "finetune.py", "--model", "L6", "--models", "m", "--data", "prep",
                     "--out", "ft/L6", "--live", "live/L6", *extra)


def assert_ends_with_error(out, *words):
    """A failure during the work: progress lines first, then the one `error:` line, no traceback."""
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr and lines[-1].startswith("error: "), out.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, out.stderr
    for word in words:
        assert word in lines[-1]


def left_behind(workdir) -> list[str]:
    """Files a stage left in its run folder beyond its inputs (links to them are not followed)."""
    return sorted(str(Path(folder, name).relative_to(workdir))
                  for folder, _, files in os.walk(workdir) for name in files
                  if Path(folder, name) != workdir / "params.yaml")


def test_a_diverging_distillation_stops_at_once_and_saves_nothing(workdir):
    # 8 sentences, batch 4: 2 steps; a checkpoint after the finite first, nan at the second
    edit_params(workdir, lambda p: p["distill"].update(lr=1e10, checkpoint_every=1))
    out = distill(workdir, "--checkpoints", "ckpt", run=run_stage)  # a real process's exit status
    assert_ends_with_error(out, "distill L6->L5", "loss=nan", "optimizer step 2 of 2",
                          "lr 1e+10", "diverged")
    assert left_behind(workdir) == []  # no model, no live folder, no checkpoint to resume


def test_a_diverging_finetune_stops_at_once_and_saves_nothing(workdir):
    edit_params(workdir, lambda p: p["finetune"].update(lr=1e10, checkpoint_every=1))
    out = finetune(workdir, "--checkpoints", "ckpt")
    assert_ends_with_error(out, "finetune L6", "loss=nan", "optimizer step 2 of 8", "lr 1e+10",
                          "diverged")
    assert left_behind(workdir) == []


class OneBatch:
    """A batch plan of one empty batch per epoch, for a module that needs no inputs."""

    def __len__(self):
        return 1

    def global_batches(self, epoch):
        return [np.arange(1)]

    def micro_batches(self, indices):
        return [MicroBatch({}, None, 1)]


class InfiniteGradient(torch.nn.Module):
    """A finite loss (0) whose gradient is infinite: sqrt at 0. Clipping turns the gradient to
    nan, so the update leaves a nan weight behind a finite loss."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batch, shares=None):
        return self.w.sqrt().sum(), {}


def test_a_last_step_that_leaves_non_finite_weights_is_caught(accelerator):
    cfg = {"epochs": 1, "lr": 1e-3, "warmup": 0.0, "batch_size": 1}
    trainer = training.Trainer(InfiniteGradient(), cfg, accelerator, total_steps=1)
    with pytest.raises(Diverged, match=r"toy: non-finite weights after optimizer step 1 of 1 "
                                       r"with lr 0.001"):
        training.run_training(trainer, OneBatch(), cfg, Recorder(), "toy", seed=0)


@pytest.mark.parametrize("lr", [float("nan"), float("inf")])
def test_a_non_finite_lr_is_refused(lr):
    cfg = {"epochs": 1, "batch_size": 4, "lr": lr, "warmup": 0.0, "device": "cpu"}
    with pytest.raises(ConfigError, match=rf"distill.lr={lr}: expected a finite number >= 0"):
        settings.check_training_params(cfg, "distill")


# every objective error comes from check_terms (an unknown loss too: tests/test_distillation.py)
@pytest.mark.parametrize("term, words", [
    ({"loss": "hidden_mse", "map": [[9, 9]]}, "distill.objectives[0].map: pair [9, 9] out of range"),
    ({"loss": "hidden_mse", "weight": -1}, "distill.objectives[0].weight=-1: expected a finite "
                                           "number >= 0"),
])
def test_a_bad_objective_fails_before_any_model_is_loaded(workdir, term, words):
    edit_params(workdir, lambda p: p["distill"].update(objectives=[term]))
    out = distill(workdir)
    assert_one_line_error(out, words)  # one line: no weights were loaded first
    assert left_behind(workdir) == []


SMALL = SimpleNamespace(num_hidden_layers=2, hidden_size=8, num_attention_heads=2)
BIG = SimpleNamespace(num_hidden_layers=4, hidden_size=8, num_attention_heads=2)


@pytest.mark.parametrize("weight", [-1, -0.5, float("nan"), float("inf"), "1", True, None])
def test_an_objective_weight_must_be_a_finite_number_at_least_0(weight):
    with pytest.raises(ConfigError, match=r"objectives\[1\]\.weight=.*: expected a finite number"):
        check_terms([{"loss": "hidden_mse"}, {"loss": "hidden_cosine", "weight": weight}],
                    SMALL, BIG)


def test_a_weight_of_0_logs_a_term_but_all_0_trains_nothing():
    terms = check_terms([{"loss": "hidden_mse"}, {"loss": "attention_kl", "weight": 0}],
                        SMALL, BIG)
    assert [t.weight for t in terms] == [1.0, 0.0]
    with pytest.raises(ConfigError, match="every weight is 0"):
        check_terms([{"loss": "hidden_mse", "weight": 0}], SMALL, BIG)


@pytest.mark.parametrize("max_length, words", [
    (0, "data.max_length=0: expected a positive integer"),
    (100000, "data.max_length=100000: expected at most 512, the teacher's "
             "max_position_embeddings"),
])
def test_prepare_refuses_a_max_length_the_teacher_cannot_take(workdir, max_length, words):
    edit_params(workdir, lambda p: p["data"].update(max_length=max_length))
    out = call_stage(workdir, "prepare.py", "--teacher", "m/L6", "--out", "prepared")
    assert_one_line_error(out, words)
    assert left_behind(workdir) == []


@pytest.mark.parametrize("max_length, words", [
    ("64", "data.max_length='64': expected a positive integer"),
    (True, "data.max_length=True: expected a positive integer"),
    (3, "data.max_length=3: expected more than the 3 special tokens"),  # [CLS] a [SEP] b [SEP]
])
def test_a_max_length_leaves_room_for_text(max_length, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        data.check_max_length(max_length, positions=512, specials=3)
    assert data.check_max_length(4, positions=512, specials=3) == 4


@pytest.mark.parametrize("blocked, run, words", [
    ("m/L5", distill, "m/L5: cannot be written: it is not a folder"),
    ("live", distill, "live/L5: cannot be written: "),
    ("ft", finetune, "ft/L6: cannot be written: "),
])
def test_an_output_that_cannot_be_written_fails_first(workdir, blocked, run, words):
    (workdir / blocked).write_text("a file where a folder should be\n")
    out = run(workdir)
    assert_one_line_error(out, words, "is not a folder")
    assert left_behind(workdir) == [blocked]  # no live folder, no model


def test_a_folder_without_write_permission_is_named(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(ConfigError, match=f"{locked}/L5: cannot be written: no write "
                                          f"permission in {locked}"):
        runtime.check_writable(locked / "L5")
    runtime.check_writable(tmp_path / "free" / "L5")  # a folder it would create


@pytest.mark.parametrize("run", [
    lambda w: call_stage(w, "prepare.py", "--teacher", "m/L6", "--out", "prepared"),
    distill], ids=["prepare", "distill"])  # finetune takes the seed the same way
def test_a_seed_that_is_not_an_integer_is_named(workdir, run):
    edit_params(workdir, lambda p: p.update(seed="abc"))
    out = run(workdir)
    assert_one_line_error(out)
    assert out.stderr.strip() == "error: seed='abc': expected an integer"
    assert left_behind(workdir) == []


@pytest.mark.parametrize("seed, words", [
    (1.5, "seed=1.5: expected an integer"), (True, "seed=True: expected an integer"),
    (None, "seed=None: expected an integer"), (-1, "seed=-1: expected an integer in 0.."),
    (2**40, "expected an integer in 0..2147483647")])
def test_seeds_numpy_cannot_take_are_refused(seed, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        runtime.seed_of({"seed": seed})
    assert runtime.seed_of({"seed": 0}) == 0


def test_no_languages_on_the_synthetic_source_is_named(workdir):
    edit_params(workdir, lambda p: p["data"].update(languages=[]))
    out = call_stage(workdir, "prepare.py", "--teacher", "m/L6", "--out", "prepared")
    assert_one_line_error(out, "data.languages: expected a non-empty list of names, got []")
    assert left_behind(workdir) == []


@pytest.mark.parametrize("param", ["languages", "train_languages"])
def test_every_source_refuses_an_empty_language_list_with_the_same_line(param, tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]
    lines = set()
    for source in ("synthetic", "local", "hub"):
        with pytest.raises(ConfigError) as err:
            sources.load_nli({**params, "source": source, "path": str(tmp_path), param: []}, 0)
        lines.add(str(err.value))
    assert lines == {f"data.{param}: expected a non-empty list of names, got []"}


@pytest.mark.parametrize("override, line", [
    ("cascade.steps=0", None),  # None: the line a stage gives, from kdcascade.schedule
    ("preset=nope", "preset=nope: expected one of paper, quickstart, tiny (conf/preset/)"),
])
def test_compose_ends_a_bad_override_with_the_stages_one_line(tmp_path, override, line):
    if line is None:
        with pytest.raises(ConfigError) as err:
            schedule.depths(6, 3, 0)
        line = str(err.value)
    committed = (ROOT / "params.yaml").read_bytes()
    out = subprocess.run([sys.executable, "-m", "kdcascade.compose", override], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "stages")},
                         capture_output=True, text=True)
    assert (out.returncode, out.stderr) == (2, f"error: {line}\n")
    assert (ROOT / "params.yaml").read_bytes() == committed
