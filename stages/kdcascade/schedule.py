"""The cascade schedule: which depths the teacher assistants have, and which models exist.

Pure Python (no torch), because the Hydra resolver imports it at composition time.
Models are named by depth: "L12" is the 12-layer teacher, "L6" the final student,
"L6-trunc" the truncation-only baseline (the teacher's bottom layers, never distilled).
"""

from .errors import ConfigError


def depths(teacher_layers: int, student_layers: int, steps: int) -> list[int]:
    """Depths from teacher to student, evenly spaced and rounded half up.

    12 -> 6 in 6 steps: [12, 11, 10, 9, 8, 7, 6]; in 3 steps: [12, 10, 8, 6].
    """
    for name, value in (("teacher.layers", teacher_layers),
                        ("cascade.student_layers", student_layers),
                        ("cascade.steps", steps)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}={value!r}: expected an integer")
    if student_layers < 1:
        raise ConfigError(f"cascade.student_layers={student_layers}: expected at least 1 layer")
    if student_layers >= teacher_layers:
        raise ConfigError(f"cascade.student_layers={student_layers}: expected fewer layers "
                          f"than the {teacher_layers}-layer teacher")
    gap = teacher_layers - student_layers
    if not 1 <= steps <= gap:
        raise ConfigError(f"cascade.steps={steps}: expected 1..{gap} (each step removes at least "
                          f"one layer, {teacher_layers} -> {student_layers})")
    return [teacher_layers - (2 * i * gap + steps) // (2 * steps) for i in range(steps + 1)]


def model_name(layers: int) -> str:
    return f"L{layers}"


def baseline_name(layers: int) -> str:
    return f"L{layers}-trunc"


def distill_steps(teacher_layers: int, student_layers: int, steps: int) -> dict[str, dict]:
    """One record per distill stage, keyed by the model it produces, chained by name."""
    d = depths(teacher_layers, student_layers, steps)
    return {model_name(b): {"step": i + 1, "from": model_name(a), "from_layers": a, "layers": b}
            for i, (a, b) in enumerate(zip(d, d[1:]))}


def models(teacher_layers: int, student_layers: int, steps: int) -> dict[str, dict]:
    """Every model that is fine-tuned and evaluated, in report order."""
    d = depths(teacher_layers, student_layers, steps)
    out = {model_name(d[0]): {"layers": d[0], "role": "teacher"}}
    for layers in d[1:-1]:
        out[model_name(layers)] = {"layers": layers, "role": "assistant"}
    out[model_name(d[-1])] = {"layers": d[-1], "role": "student"}
    out[baseline_name(d[-1])] = {"layers": d[-1], "role": "truncated"}
    return out


def students(teacher_layers: int, student_layers: int, steps: int) -> dict[str, dict]:
    """The models fine-tuned after the teacher (they may learn from its fine-tuned logits)."""
    return {name: m for name, m in models(teacher_layers, student_layers, steps).items()
            if m["role"] != "teacher"}


LOGITS_FROM = ("teacher", "predecessor")  # cascade.logits_from


def learns_from(teacher_layers: int, student_layers: int, steps: int,
                logits_from: str = "teacher") -> dict[str, str]:
    """{model fine-tuned after the teacher: the fine-tuned model whose logits it learns}.

    `teacher`: every model learns the teacher's. `predecessor` (TAKD's chain for the task): each
    distilled model learns those of the model it was distilled from; the truncated baseline, which
    has no predecessor, keeps the teacher's (what one has without any distillation).
    """
    if logits_from not in LOGITS_FROM:
        raise ConfigError(f"cascade.logits_from={logits_from!r}: expected one of "
                          f"{', '.join(LOGITS_FROM)}")
    teacher = model_name(teacher_layers)
    steps_ = distill_steps(teacher_layers, student_layers, steps)
    return {name: steps_[name]["from"] if logits_from == "predecessor" and name in steps_
            else teacher for name in students(teacher_layers, student_layers, steps)}


STORED = ("distilled_from", "learns_from")  # the computed keys under `cascade` in params.yaml


def stored(teacher_layers: int, student_layers: int, steps: int,
           logits_from: str = "teacher") -> dict:
    """What params.yaml stores under `cascade` for dvc.yaml to loop over (computed by Hydra).

    `distilled_from` ({model: predecessor}, one distill stage each) and `learns_from` (see
    learns_from, one finetune stage each), each wrapped in a one-item list: `dvc exp show` makes a
    column of every leaf of params.yaml and never splits a list, so the schedule takes one column
    each whatever the step count (a dict keyed by model would add columns per model, blank for
    shorter cascades). dvc.yaml loops over `distilled_from[0]` and `learns_from[0]`.
    """
    chain = {name: s["from"] for name, s in distill_steps(teacher_layers, student_layers,
                                                          steps).items()}
    return dict(zip(STORED, ([chain], [learns_from(teacher_layers, student_layers, steps,
                                                   logits_from)])))


def _shape(params: dict) -> tuple[int, int, int, str]:
    return (params["teacher"]["layers"], params["cascade"]["student_layers"],
            params["cascade"]["steps"], params["cascade"].get("logits_from", "teacher"))


def check_params(params: dict) -> None:
    """Refuse a params.yaml whose stored schedule disagrees with its own teacher/student/steps.

    `dvc exp run` recomposes the schedule through Hydra; a hand-edited params.yaml read by plain
    `dvc repro` may not have, and the stages would then run a cascade nobody asked for.
    """
    t, c = params["teacher"], params["cascade"]
    want = stored(*_shape(params))
    if {k: c.get(k) for k in want} != want:
        raise ConfigError(
            f"params.yaml: cascade.distilled_from/cascade.learns_from do not match teacher.layers="
            f"{t['layers']}, cascade.student_layers={c['student_layers']}, cascade.steps="
            f"{c['steps']}, cascade.logits_from={_shape(params)[3]}; edit conf/ and run "
            "`dvc exp run`, or `python -m kdcascade.compose`")


def steps_of(params: dict) -> dict[str, dict]:
    """The distill steps of a checked params.yaml (see distill_steps)."""
    check_params(params)
    return distill_steps(*_shape(params)[:3])


def models_of(params: dict) -> dict[str, dict]:
    """Every model of a checked params.yaml, teacher first (see models)."""
    check_params(params)
    return models(*_shape(params)[:3])


def learns_from_of(params: dict) -> dict[str, str]:
    """{model: the model whose logits it learns} of a checked params.yaml (see learns_from)."""
    check_params(params)
    return learns_from(*_shape(params))


UNIQUE_ROLES = ("teacher", "student", "truncated")  # assistants are several: named by depth


def model_named(item: str, models: dict[str, dict], param: str) -> str:
    """The model an item of a params list means: a model name (`L3`) or the role of exactly
    one model (`student`, `truncated`, `teacher`)."""
    if item in models:
        return item
    by_role = [name for name, m in models.items() if m["role"] == item]
    if item in UNIQUE_ROLES and len(by_role) == 1:
        return by_role[0]
    raise ConfigError(f"{param}: {item!r} is neither a model of this cascade "
                      f"({', '.join(models)}) nor one of the roles {', '.join(UNIQUE_ROLES)}")
