from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from kdcascade import schedule
from kdcascade.compose import compose
from kdcascade.errors import ConfigError


@pytest.mark.parametrize("steps, expected", [
    (6, [12, 11, 10, 9, 8, 7, 6]),
    (3, [12, 10, 8, 6]),
    (2, [12, 9, 6]),
    (1, [12, 6]),
    (4, [12, 10, 9, 7, 6]),
])
def test_depths_from_12_to_6(steps, expected):
    assert schedule.depths(12, 6, steps) == expected


@pytest.mark.parametrize("teacher, student, steps, words", [
    (12, 6, 7, "cascade.steps=7: expected 1..6"),
    (12, 6, 0, "cascade.steps=0"),
    (6, 6, 1, "cascade.student_layers=6: expected fewer layers"),
    (6, 8, 1, "cascade.student_layers=8"),
    (6, 0, 1, "cascade.student_layers=0: expected at least 1"),
    (6, 3, 1.5, "cascade.steps=1.5: expected an integer"),
])
def test_impossible_schedules_are_refused(teacher, student, steps, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.").replace("=", "=")):
        schedule.depths(teacher, student, steps)


def test_steps_are_chained_by_name():
    steps = schedule.distill_steps(6, 3, 3)
    assert list(steps) == ["L5", "L4", "L3"]
    assert [s["from"] for s in steps.values()] == ["L6", "L5", "L4"]
    assert [s["step"] for s in steps.values()] == [1, 2, 3]


def test_models_list_teacher_assistants_student_and_both_baselines():
    models = schedule.models(12, 6, 3)
    assert [(k, v["role"]) for k, v in models.items()] == [
        ("L12", "teacher"), ("L10", "assistant"), ("L8", "assistant"),
        ("L6", "student"), ("L6-trunc", "truncated"), ("L6-plain", "plain")]
    direct = schedule.models(12, 6, 1, plain=False)  # cascade.plain_baseline: false
    assert [v["role"] for v in direct.values()] == ["teacher", "student", "truncated"]
    with pytest.raises(ConfigError, match=r"cascade.plain_baseline='no': expected true"):
        schedule.models(12, 6, 1, plain="no")


def shape(teacher=12, student=6, steps=3, logits_from="teacher", plain=True, transfer="all",
          intermediate="all") -> dict:
    """The params the stored schedule is computed from."""
    return {"teacher": {"layers": teacher},
            "cascade": {"student_layers": student, "steps": steps, "logits_from": logits_from,
                        "plain_baseline": plain},
            "finetune": {"transfer": {"models": transfer},
                         "intermediate": {"models": intermediate}}}


def test_the_stored_schedule_is_three_lists_whatever_the_step_count():
    # `dvc exp show` makes a column of every leaf of params.yaml and never splits a list
    for steps in (1, 3, 6):
        stored = schedule.stored(shape(steps=steps))
        assert set(stored) == set(schedule.STORED)
        assert all(isinstance(v, list) and len(v) == 1 for v in stored.values())
    every = {"logits": "L6", "transfer": True, "intermediate": True}
    assert schedule.stored(shape(6, 3, 3)) == {
        "distilled_from": [{"L5": "L6", "L4": "L5", "L3": "L4"}],
        "learns_from": [{"L5": every, "L4": every, "L3": every, "L3-trunc": every}],
        "plain_from": [{"L3-plain": "L3-trunc"}]}
    assert schedule.stored(shape(6, 3, 3, plain=False))["plain_from"] == [{}]


def test_what_each_model_learns_follows_the_models_settings():
    """transfer.models / intermediate.models=distilled take the pairs or the layer terms from
    the truncated baseline alone; the plain baseline never learns from a teacher."""
    learns = schedule.fine_tuning(12, 6, 2, "teacher", "distilled", "all")
    assert {name: r["transfer"] for name, r in learns.items()} == {
        "L9": True, "L6": True, "L6-trunc": False}
    assert all(r["intermediate"] for r in learns.values())
    learns = schedule.fine_tuning(12, 6, 2, "teacher", "all", "distilled")
    assert [r["intermediate"] for r in learns.values()] == [True, True, False]
    assert "L6-plain" not in learns and "L6-plain" in schedule.models(12, 6, 2)
    with pytest.raises(ConfigError, match=r"finetune.intermediate.models='some': expected one"):
        schedule.fine_tuning(12, 6, 2, "teacher", "all", "some")


def test_conf_passes_each_stored_key_the_params_it_is_computed_from():
    """conf/config.yaml's resolver calls and schedule.STORED name the same params, in order."""
    cascade = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())["cascade"]
    for key, (_, paths) in schedule.STORED.items():
        assert cascade[key] == f"${{cascade_{key}:" + ",".join(f"${{{p}}}" for p in paths) + "}"


def test_with_predecessor_logits_each_distilled_model_learns_from_the_one_before():
    """TAKD's chain for the task; the truncated baseline has no predecessor: the teacher's."""
    assert schedule.learns_from(12, 6, 3, "predecessor") == {
        "L10": "L12", "L8": "L10", "L6": "L8", "L6-trunc": "L12"}
    assert schedule.learns_from(12, 6, 1, "predecessor") == schedule.learns_from(12, 6, 1)
    with pytest.raises(ConfigError, match=r"cascade.logits_from='assistant': expected one of "
                                          r"teacher, predecessor"):
        schedule.learns_from(12, 6, 3, "assistant")


def test_hydra_composes_the_logits_chain_and_refuses_a_bad_source(tmp_path):
    out = tmp_path / "params.yaml"
    compose(out, ["cascade.steps=2", "cascade.logits_from=predecessor"])
    params = yaml.safe_load(out.read_text())
    assert schedule.learns_from_of(params) == {"L4": "L6", "L3": "L4", "L3-trunc": "L6"}
    assert schedule.fine_tuning_of(params) == params["cascade"]["learns_from"][0]
    params["cascade"]["logits_from"] = "teacher"  # edited by hand: the stored chain disagrees
    with pytest.raises(ConfigError, match=r"cascade.learns_from do not match .*"
                                          r"cascade.logits_from=teacher"):
        schedule.learns_from_of(params)
    with pytest.raises(ConfigError, match=r"cascade.logits_from='x': expected one of"):
        compose(out, ["cascade.logits_from=x"])


def test_committed_params_are_what_hydra_composes(tmp_path):
    out = tmp_path / "params.yaml"
    compose(out, [])
    assert yaml.safe_load(out.read_text()) == yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_hydra_composes_the_schedule_for_any_step_count(tmp_path, steps):
    out = tmp_path / "params.yaml"
    compose(out, [f"cascade.steps={steps}"])
    params = yaml.safe_load(out.read_text())
    assert len(params["cascade"]["distilled_from"][0]) == steps
    assert len(schedule.steps_of(params)) == steps


def test_paper_preset_composes_the_papers_cascade(tmp_path):
    out = tmp_path / "params.yaml"
    compose(out, ["preset=paper"])
    params = yaml.safe_load(out.read_text())
    assert params["cascade"]["distilled_from"] == [
        {f"L{n}": f"L{n + 1}" for n in (11, 10, 9, 8, 7, 6)}]
    assert schedule.learns_from_of(params) == {
        **{f"L{n}": "L12" for n in (11, 10, 9, 8, 7, 6)}, "L6-trunc": "L12"}
    assert params["cascade"]["plain_from"] == [{"L6-plain": "L6-trunc"}]
    assert params["teacher"]["name"] == "bert-base-multilingual-cased"
    assert len(params["data"]["languages"]) == 15
    assert params["finetune"]["lr"] == 2e-5 and params["finetune"]["epochs"] == 3
    # general distillation on Wikipedia, 3M sentences shared out by mBERT's smoothing
    assert params["data"]["distill_corpus"] == "hub" and params["data"]["distill_smoothing"] == 0.7
    assert params["data"]["distill_hub"]["dataset"] == "wikimedia/wikipedia"
    sizes = params["data"]["sizes"]
    assert sizes["distill"] * 15 == 3_000_000 and sizes["transfer"] == 20000


@pytest.mark.parametrize("overrides, objective, transfer, corpus", [
    ([], {"loss": "hidden_nmse", "map": "skip", "weight": 1.0}, 1.0, "translated_train"),
    (["method=hidden"], {"loss": "hidden_mse", "map": "shifted", "weight": 1.0}, 0.0, "none"),
    (["preset=paper"], {"loss": "hidden_nmse", "map": "skip", "weight": 1.0}, 1.0,
     "translated_train"),
    (["preset=paper", "method=hidden"], {"loss": "hidden_mse", "map": "shifted", "weight": 1.0},
     0.0, "none")])
def test_the_quickstart_and_paper_distil_in_two_stages_unless_told_otherwise(
        tmp_path, overrides, objective, transfer, corpus):
    """The quickstart and paper presets pick method=twostage; a method on the command line wins."""
    out = tmp_path / "params.yaml"
    compose(out, overrides)
    params = yaml.safe_load(out.read_text())
    assert params["distill"]["objectives"] == [objective]
    assert params["finetune"]["transfer"]["weight"] == transfer
    assert params["data"]["transfer_corpus"] == corpus
    assert params["finetune"]["soft_labels"]["weight"] == (0.5 if transfer else 0.0)


def test_impossible_schedule_fails_at_composition(tmp_path):
    out = tmp_path / "params.yaml"
    with pytest.raises(ConfigError, match=r"^cascade\.steps=5: expected 1\.\.3"):
        compose(out, ["cascade.steps=5"])
    assert not out.exists()


def test_hand_edited_schedule_is_refused():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["cascade"]["steps"] = 1
    with pytest.raises(ConfigError, match="do not match"):
        schedule.check_params(params)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["cascade"]["plain_baseline"] = False  # the stored stage list still has it
    with pytest.raises(ConfigError, match=r"^params.yaml: cascade.plain_from do not match "
                                          r"cascade.student_layers=3, cascade.plain_baseline="
                                          r"False; edit conf/"):
        schedule.check_params(params)
