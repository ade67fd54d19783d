"""The report and its headline (reports/summary.json, the columns of `dvc exp show`) carry both
baselines and both gains: over the plain baseline (all that distillation adds) and over the
truncated one (what general distillation and the cascade add); without the plain baseline the
missing gain is absent, not zero."""

import json

import pytest
import yaml

import report
from kdcascade.compose import compose
from test_stage_errors import call_stage

LANGUAGES = ("en", "de")
# average test accuracy (%) per model of the quickstart cascade, as evaluate writes them
AVERAGES = {"L6": 60.25, "L5": 57.5, "L4": 55.0, "L3": 51.88, "L3-trunc": 54.25, "L3-plain": 48.0}
ROLES = {"L6": "teacher", "L5": "assistant", "L4": "assistant", "L3": "student",
         "L3-trunc": "truncated", "L3-plain": "plain"}


def metrics_of(names) -> dict:
    return {n: {"role": ROLES[n], "layers": int(n[1]), "retention": round(
        100 * AVERAGES[n] / AVERAGES["L6"], 2), "accuracy": {
            "en": AVERAGES[n] + 1, "de": AVERAGES[n] - 1, "avg": AVERAGES[n]}} for n in names}


def speed_of(names) -> dict:
    return {n: {"parameters": {"total": 22.7e6, "encoder": 1.8e6 * int(n[1]), "embeddings": 12e6},
                "bytes_on_disk": 9e7, "encoder_gflops": 0.5 * int(n[1]), "flop_speedup": 1.5,
                "latency": {"batch2": {"ms": 3.0 * int(n[1]), "examples_per_second": 100.0}},
                "speedup_batch2": 6 / int(n[1])} for n in names}


def params_for(tmp_path, *overrides) -> dict:
    compose(tmp_path / "params.yaml", list(overrides))
    return yaml.safe_load((tmp_path / "params.yaml").read_text())


def test_the_headline_carries_both_baselines_and_both_gains():
    names = list(AVERAGES)
    top = report.headline(metrics_of(names), speed_of(names), {"test": {"rows": 400}})
    assert list(top) == ["teacher_avg", "student_avg", "truncated_avg", "plain_avg",
                         "distill_gain", "gain_vs_plain", "retention", "speedup", "params_m",
                         "languages", "test_pairs"]
    # each gain is the difference of the two averages shown beside it
    assert top["gain_vs_plain"] == round(top["student_avg"] - top["plain_avg"], 2) == 3.88
    assert top["distill_gain"] == round(top["student_avg"] - top["truncated_avg"], 2) == -2.37
    without = report.headline(metrics_of(names[:-1]), speed_of(names[:-1]),
                              {"test": {"rows": 400}})
    assert "plain_avg" not in without and "gain_vs_plain" not in without
    assert {k: v for k, v in top.items() if k not in ("plain_avg", "gain_vs_plain")} == without


def test_the_sentence_says_both_gains_with_their_sign(tmp_path):
    params = params_for(tmp_path)
    names = list(AVERAGES)
    top = report.headline(metrics_of(names), speed_of(names), {"test": {"rows": 400}})
    said = report.gains_sentence(top, metrics_of(names), params)
    learnt = "the labels, L6's soft labels and L6's logits on the transfer pairs"
    assert f"The student L3 learned {learnt}." in said
    assert ("Against the plain baseline L3-plain (the teacher's bottom 3 layers fine-tuned on "
            "the labels alone: no distillation at all) it scores +3.88 points (above it): all "
            "that distillation adds (`gain_vs_plain`).") in said
    assert (f"Against the truncated baseline L3-trunc (the same layers, never distilled, "
            f"fine-tuned on {learnt}) it scores -2.37 points (below it): what general "
            "distillation and the cascade add on top of the same task distillation "
            "(`distill_gain`).") in said


def test_the_sentence_follows_what_the_truncated_baseline_learned(tmp_path):
    names = list(AVERAGES)[:-1]
    top = report.headline(metrics_of(names), speed_of(names), {"test": {"rows": 400}})
    params = params_for(tmp_path, "finetune.transfer.models=distilled",
                        "cascade.plain_baseline=false")
    said = report.gains_sentence(top, metrics_of(names), params)
    assert "fine-tuned on the labels and L6's soft labels) it scores -2.37" in said
    assert "with the task distillation the baseline does not get" in said
    assert "No plain baseline (`cascade.plain_baseline: false`)" in said
    assert report.what_it_learns(params, "L3-plain") == "the labels alone"
    # no task distillation at all (method=hidden): both learn the labels alone
    said = report.gains_sentence(top, metrics_of(names), params_for(tmp_path, "method=hidden"))
    assert ("The student L3 learned the labels alone. No plain baseline" in said
            and "fine-tuned on the labels alone) it scores -2.37 points (below it): what general "
            "distillation and the cascade add (`distill_gain`)." in said)


@pytest.fixture
def inputs(tmp_path):
    """What the report stage reads, for the quickstart cascade without the plain baseline."""
    params = params_for(tmp_path, "cascade.plain_baseline=false")
    names = list(report.schedule.models_of(params))
    assert names == ["L6", "L5", "L4", "L3", "L3-trunc"]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics_of(names)))
    (tmp_path / "eval" / "efficiency.json").write_text(json.dumps(speed_of(names)))
    variant = {"accuracy": {"en": 52.0, "de": 50.0, "avg": 51.0}, "agreement": 100.0,
               "bytes_on_disk": 9e7, "bytes_without_word_embeddings": 1e7}
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "metrics.json").write_text(json.dumps({"threads": 1, "models": {
        "student": {"model": "L3", "variants": {"pytorch-fp32": variant}}}}))
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "summary.json").write_text(json.dumps({"test": {
        "rows": 400, "rows_per_language": {lang: 200 for lang in LANGUAGES},
        "label_balance": {"entailment": 1 / 3}, "truncation_rate": 0.0, "mean_tokens": 30.0}}))
    (tmp_path / "live").mkdir()
    return tmp_path


def test_a_cascade_without_the_plain_baseline_still_reports(inputs):
    out = call_stage(inputs, "report.py", "--eval", "eval", "--export", "export",
                     "--data", "prepared", "--live", "live", "--out", "reports")
    assert out.returncode == 0, out.stderr
    summary = json.loads((inputs / "reports" / "summary.json").read_text())
    assert "plain_avg" not in summary and "gain_vs_plain" not in summary  # absent, not zero
    assert summary["distill_gain"] == -2.37
    md = (inputs / "reports" / "report.md").read_text()
    assert "No plain baseline (`cascade.plain_baseline: false`)" in md
    assert "it scores -2.37 points (below it)" in md
