import pytest

from kdcascade import compare, schedule


def entry(name, steps, seed, student, rev, teacher=80.0, truncated=40.0, plain=None, **extra):
    params = {"seed": seed, "teacher": {"layers": 12},
              "cascade": {"steps": steps, "student_layers": 6, "logits_from": "teacher",
                          "plain_baseline": plain is not None},
              "finetune": {"transfer": {"models": "all"}, "intermediate": {"models": "all"}},
              "distill": {"init": extra.get("init", "drop_top")}}
    params["cascade"].update(schedule.stored(params))
    metrics = {"reports/summary.json": {"data": {
        "student_avg": student, "teacher_avg": teacher, "truncated_avg": truncated,
        "distill_gain": round(student - truncated, 2),
        **({"plain_avg": plain, "gain_vs_plain": round(student - plain, 2)}
           if plain is not None else {})}}}
    return {"rev": rev, "name": name,
            "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics}}


def shown(*exps, baseline=None):
    """The shape of `dvc exp show --json`: workspace, then the commit with its experiments."""
    base = baseline or entry("main", 3, 0, 60.0, "c0")
    return [{**entry(None, 3, 0, 60.0, "workspace"), "experiments": None},
            {**base, "experiments": [{"revs": [e]} for e in exps]}]


def test_rows_for_experiments_with_different_step_counts():
    table = compare.experiments(shown(entry("a", 1, 0, 50.0, "r1"), entry("b", 6, 0, 58.0, "r2")))
    assert list(table.name) == ["main", "a", "b"]
    assert list(table["cascade.steps"]) == [3, 1, 6]
    assert not any(c.startswith(tuple(f"cascade.{k}" for k in schedule.STORED))
                   for c in table.columns)


def test_seeds_are_pooled_and_noise_is_named():
    exps = [entry(f"s1-{s}", 1, s, v, f"a{s}") for s, v in ((0, 50.0), (1, 52.0), (2, 51.0))]
    exps += [entry(f"s3-{s}", 3, s, v, f"b{s}") for s, v in ((1, 60.5), (2, 59.5))]
    table = compare.experiments(shown(*exps))
    groups = compare.group_seeds(table)
    assert list(groups["cascade.steps"]) == [1, 3]
    one = groups.iloc[0]
    assert one["student_avg mean"] == pytest.approx(51.0)
    assert one["student_avg std"] == pytest.approx(1.0)
    assert one["student_avg count"] == 3 and one["seeds"] == "0,1,2"
    three = groups.iloc[1]  # main (seed 0, 60.0) and two seeds
    assert three["student_avg count"] == 3 and three["student_avg mean"] == pytest.approx(60.0)
    verdicts = list(compare.against_reference(groups))
    assert verdicts == ["within noise", "beyond noise (>2 SE)"]


def test_both_gains_are_pooled_over_the_seeds_that_have_them():
    """gain_vs_plain is absent (not zero) from a run without the plain baseline: its group
    (cascade.plain_baseline differs) has no gain_vs_plain, never a 0."""
    exps = [entry(f"s{s}", 1, s, v, f"a{s}", truncated=t, plain=p)
            for s, v, t, p in ((0, 50.0, 52.0, 45.0), (1, 52.0, 51.0, 47.0), (2, 54.0, 53.0, 46.0))]
    groups = compare.group_seeds(compare.experiments(shown(*exps)))
    one = groups[groups["cascade.steps"] == 1].iloc[0]
    assert one["distill_gain mean"] == pytest.approx((-2.0 + 1.0 + 1.0) / 3)
    assert one["gain_vs_plain mean"] == pytest.approx((5.0 + 5.0 + 8.0) / 3)
    assert one["gain_vs_plain std"] == pytest.approx(3 ** 0.5)
    assert one["gain_vs_plain count"] == 3
    mixed = [entry("with", 1, 0, 50.0, "r1", plain=44.0), entry("without", 1, 1, 52.0, "r2")]
    table = compare.experiments(shown(*mixed))
    assert table.set_index("name")["gain_vs_plain"].isna().to_dict() == {
        "main": True, "with": False, "without": True}
    groups = compare.group_seeds(table)
    groups = groups[groups["cascade.steps"] == 1].set_index("cascade.plain_baseline")
    assert groups.loc[True, "gain_vs_plain mean"] == 6.0
    assert groups.loc[False, "gain_vs_plain count"] == 0
    assert groups.loc[False, "gain_vs_plain mean"] != groups.loc[False, "gain_vs_plain mean"]


def test_other_params_are_never_pooled_with_seeds():
    exps = [entry("u", 1, 1, 50.0, "r1", init="uniform"), entry("d", 1, 1, 55.0, "r2")]
    groups = compare.group_seeds(compare.experiments(shown(*exps)))
    assert len(groups) == 3  # (1, drop_top), (1, uniform), (3, drop_top)
    assert set(groups["distill.init"]) == {"drop_top", "uniform"}


def test_a_commit_and_its_experiment_count_once():
    same = entry("exp", 3, 0, 60.0, "r9")
    assert len(compare.experiments(shown(same))) == 1


def test_verdicts():
    assert compare.verdict(50, 1, 1, 51, 1, 3) == "one seed: noise unknown"
    assert compare.verdict(50, 1, 4, 50.5, 1, 4) == "within noise"
    assert compare.verdict(50, 0.1, 4, 52, 0.1, 4) == "beyond noise (>2 SE)"
