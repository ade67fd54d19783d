import copy
from types import SimpleNamespace

import pytest
import torch

from kdcascade import data, distillation, models, training
from kdcascade.errors import ConfigError
from kdcascade.objectives import Objective, layer_pairs

from conftest import Recorder


def test_layer_maps():
    assert layer_pairs("shifted", 5, 6, "t") == [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
    assert layer_pairs("shifted", 3, 6, "t") == [(1, 4), (2, 5), (3, 6)]
    assert layer_pairs("skip", 3, 6, "t") == [(1, 1), (2, 2), (3, 6)]
    assert layer_pairs("skip", 1, 6, "t") == [(1, 6)]
    assert layer_pairs("last", 6, 12, "t") == [(6, 12)]
    assert layer_pairs("uniform", 4, 12, "t") == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert layer_pairs([[1, 2], [3, 6]], 3, 6, "t") == [(1, 2), (3, 6)]


@pytest.mark.parametrize("spec, words", [
    ([[4, 6]], r"pair \[4, 6\] out of range"),
    ([[0, 1]], r"pair \[0, 1\] out of range"),
    ([[1, 7]], r"pair \[1, 7\] out of range"),
    ("diagonal", "map='diagonal'"),
    ([[1]], "is not a"),
])
def test_invalid_map_is_refused_before_training(spec, words):
    with pytest.raises(ConfigError, match=words):
        layer_pairs(spec, 3, 6, "distill.objectives[0]")


def test_objective_needs_projection_when_widths_differ():
    s, t = SimpleNamespace(num_hidden_layers=2, hidden_size=8), \
        SimpleNamespace(num_hidden_layers=4, hidden_size=16)
    with pytest.raises(ConfigError, match=r"objectives\[0\]: student width 8 != teacher width 16"):
        Objective([{"loss": "hidden_mse", "map": "shifted"}], s, t)
    obj = Objective([{"loss": "hidden_mse", "map": "last", "projection": True}], s, t)
    assert len(list(obj.parameters())) == 2
    with pytest.raises(ConfigError, match="unknown loss 'l2'"):
        Objective([{"loss": "l2"}], s, t)


def test_a_projection_at_equal_widths_is_learned_and_only_for_hidden_states():
    s, t = SimpleNamespace(num_hidden_layers=2, hidden_size=8), \
        SimpleNamespace(num_hidden_layers=4, hidden_size=8, num_attention_heads=2)
    assert not list(Objective([{"loss": "hidden_mse", "map": "last"}], s, t).parameters())
    obj = Objective([{"loss": "hidden_mse", "map": "last", "projection": True}], s, t)
    assert [tuple(p.shape) for p in obj.parameters()] == [(8, 8), (8,)]
    for bad in ({"loss": "attention_kl", "map": "last", "projection": True},
                {"loss": "hidden_mse", "map": "last", "projection": "yes"}):
        with pytest.raises(ConfigError, match=r"objectives\[0\].projection=.*true only for a "
                                              "loss on hidden states"):
            Objective([bad], s, t)


@pytest.fixture(scope="module")
def sentences(minilm_path):
    tok = models.load_tokenizer(minilm_path)
    text = ["Anna has 3 apples and Marco has 7 books.", "Yuki hat 2 Katzen.",
            "Paul a 5 livres et Sara a 9 pommes.", "Marco tiene 4 sillas.",
            "There are 8 keys with David.", "Sara owns 6 boxes and 1 car."] * 2
    return data.tokenize_sentences(tok, text, 32)


@pytest.mark.parametrize("terms", [
    [{"loss": "hidden_mse", "map": "shifted"}],
    [{"loss": "hidden_mse", "map": "last", "weight": 1.0},
     {"loss": "attention_kl", "map": "shifted", "weight": 0.5}],
    [{"loss": "attention_mse", "map": "uniform"}, {"loss": "hidden_cosine", "map": [[2, 3]]}],
    [{"loss": "attention_mse", "feature": "attention", "map": "shifted"}],
    [{"loss": "minilm_relation", "map": "last", "relations": ["query", "value"]}],
])
def test_distilling_moves_student_towards_teacher_and_keeps_frozen_weights(
        minilm_path, sentences, terms, accelerator):
    torch.manual_seed(0)
    # a 3-layer cut of the real MiniLM as teacher keeps the test fast
    teacher = models.truncate(models.load_encoder(minilm_path), [0, 1, 2])
    student = models.truncate(teacher, models.select_layers("drop_top", 3, 2))
    objective = Objective(terms, student.config, teacher.config)
    assert objective.teacher_depth == 3
    frozen = models.freeze(student, ["embed"])
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    cfg = {"epochs": 4, "lr": 5e-4, "warmup": 0.0, "weight_decay": 0.01, "batch_size": 6}
    live = Recorder()
    stats = distillation.distill(student, teacher, objective, sentences, cfg, live, accelerator,
                                 seed=0)
    losses = [v for k, v in live.logged if k == "train/loss"]
    assert len(losses) == stats["optimizer_steps"] == 8
    assert sum(losses[-2:]) < sum(losses[:2])
    for term in objective.terms:  # every term is logged on its own
        assert any(k == f"train/{term.name}" for k, _ in live.logged)
    after = dict(student.named_parameters())
    for name in frozen:
        assert torch.equal(after[name], before[name]), name
    assert any(not torch.equal(after[n], before[n]) for n in after if n not in frozen)


def test_optimizer_holds_no_state_for_frozen_parameters(minilm_path):
    model = models.truncate(models.load_encoder(minilm_path), [0])
    frozen = set(models.freeze(model, ["embed"]))
    opt = training.optimizer_for(model, 1e-3, 0.01)
    held = {id(p) for group in opt.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert not held & {id(named[n]) for n in frozen}
    assert held == {id(p) for n, p in named.items() if n not in frozen}


def test_fused_optimizer_makes_the_default_adamw_update(minilm_path):
    """The stages' AdamW runs the fused kernel; three steps from the same gradients land
    where torch's default per-tensor loop does (weight decay and no-decay groups alike)."""
    base = models.truncate(models.load_encoder(minilm_path), [0])
    models.freeze(base, ["embed"])
    moved = []
    for fused in (True, False):
        model = copy.deepcopy(base)
        opt = training.optimizer_for(model, 1e-2, 0.1, fused=fused)
        assert bool(opt.defaults["fused"]) == fused
        gen = torch.Generator().manual_seed(0)
        for _ in range(3):
            for p in opt.param_groups[0]["params"] + opt.param_groups[1]["params"]:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        moved.append(dict(model.named_parameters()))
    start = dict(base.named_parameters())
    for name, p in moved[0].items():
        assert torch.allclose(p, moved[1][name], rtol=0, atol=1e-6), name
    assert all(not torch.equal(moved[0][n], start[n]) for n in moved[0] if "encoder" in n)


def test_teacher_runs_only_up_to_the_highest_matched_layer(minilm_path):
    teacher = models.load_encoder(minilm_path)
    distillation.stop_at(teacher, 3)
    assert len(teacher.encoder.layer) == 3
    out = teacher(**{"input_ids": torch.tensor([[101, 2000, 102]])}, output_hidden_states=True)
    assert len(out.hidden_states) == 4


def test_capture_kernel_records_only_the_layers_a_term_reads(minilm_path):
    from kdcascade import capture

    model = models.load_encoder(minilm_path, attentions=True).eval()
    tok = models.load_tokenizer(minilm_path)
    batch = tok(["Anna has 3 apples.", "Marco hat 7 Bücher und Anna hat 3 Äpfel."],
                padding=True, return_tensors="pt")
    with torch.no_grad():
        eager = model(**batch, output_attentions=True)
        capture.enable(model, {2: {"scores", "qkv"}})
        out = model(**batch)
    torch.testing.assert_close(out.last_hidden_state, eager.last_hidden_state,
                               atol=1e-3, rtol=1e-3)
    scores = capture.recorded(model, 2)["scores"]
    torch.testing.assert_close(scores.softmax(-1), eager.attentions[1], atol=1e-5, rtol=1e-5)
    assert capture.recorded(model, 2)["qkv"][0].shape == (2, 12, scores.shape[-1], 32)
    assert all(capture.recorded(model, i) == {} for i in (1, 3, 4, 5, 6))


def test_same_seed_same_losses(minilm_path, sentences, accelerator):
    """Reruns with one seed give identical numbers on one machine (dropout, shuffling, init)."""
    def run():
        torch.manual_seed(0)
        teacher = models.truncate(models.load_encoder(minilm_path), [0, 1, 2])
        student = models.truncate(teacher, [0, 1])
        models.freeze(student, ["embed"])
        objective = Objective([{"loss": "hidden_mse", "map": "shifted"}], student.config,
                              teacher.config)
        live = Recorder()
        cfg = {"epochs": 1, "lr": 5e-4, "warmup": 0.0, "weight_decay": 0.01, "batch_size": 6}
        distillation.distill(student, teacher, objective, sentences, cfg, live, accelerator,
                             seed=3)
        return [v for k, v in live.logged if k == "train/loss"]

    assert run() == run()
