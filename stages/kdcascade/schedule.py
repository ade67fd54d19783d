"""The cascade schedule: which depths the teacher assistants have, and which models exist.

Pure Python (no torch), because the Hydra resolver imports it at composition time.
Models are named by depth: "L12" is the 12-layer teacher, "L6" the final student. Two baselines
start from the teacher's bottom layers and are never distilled: "L6-trunc" (role `truncated`) is
fine-tuned exactly as the student is, teacher's signals included, and "L6-plain" (role `plain`,
cascade.plain_baseline) on the labels alone: what one gets with no distillation at all.
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


def plain_name(layers: int) -> str:
    return f"L{layers}-plain"


def check_plain_baseline(plain) -> bool:
    if not isinstance(plain, bool):
        raise ConfigError(f"cascade.plain_baseline={plain!r}: expected true (fine-tune the "
                          "truncated teacher on the labels alone too) or false")
    return plain


def distill_steps(teacher_layers: int, student_layers: int, steps: int) -> dict[str, dict]:
    """One record per distill stage, keyed by the model it produces, chained by name."""
    d = depths(teacher_layers, student_layers, steps)
    return {model_name(b): {"step": i + 1, "from": model_name(a), "from_layers": a, "layers": b}
            for i, (a, b) in enumerate(zip(d, d[1:]))}


def models(teacher_layers: int, student_layers: int, steps: int,
           plain: bool = True) -> dict[str, dict]:
    """Every model that is fine-tuned and evaluated, in report order (`plain`:
    cascade.plain_baseline)."""
    d = depths(teacher_layers, student_layers, steps)
    out = {model_name(d[0]): {"layers": d[0], "role": "teacher"}}
    for layers in d[1:-1]:
        out[model_name(layers)] = {"layers": layers, "role": "assistant"}
    out[model_name(d[-1])] = {"layers": d[-1], "role": "student"}
    out[baseline_name(d[-1])] = {"layers": d[-1], "role": "truncated"}
    if check_plain_baseline(plain):
        out[plain_name(d[-1])] = {"layers": d[-1], "role": "plain"}
    return out


# fine-tuned on the labels alone: the teacher (it has nobody to learn from) and the plain baseline
LABELS_ONLY = ("teacher", "plain")


def learners(teacher_layers: int, student_layers: int, steps: int) -> dict[str, dict]:
    """The models that may learn a fine-tuned model's signals: assistants, student and the
    truncated baseline (not the teacher nor the plain baseline, which learn the labels alone)."""
    return {name: m for name, m in models(teacher_layers, student_layers, steps, False).items()
            if m["role"] not in LABELS_ONLY}


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
            else teacher for name in learners(teacher_layers, student_layers, steps)}


TRANSFER_MODELS = ("all", "distilled")  # finetune.transfer.models, finetune.intermediate.models


def setting_applies(models: str, distilled: bool) -> bool:
    """Whether finetune.transfer or finetune.intermediate, whose `models` is given, applies to a
    model: `all` to the truncated baseline too (the same fine-tuning for every model),
    `distilled` to the distilled ones only."""
    return models == "all" or distilled


def check_models_setting(models: str, param: str) -> str:
    if models not in TRANSFER_MODELS:
        raise ConfigError(f"{param}={models!r}: expected one of {', '.join(TRANSFER_MODELS)}")
    return models


def fine_tuning(teacher_layers: int, student_layers: int, steps: int, logits_from: str = "teacher",
                transfer_models: str = "all", intermediate_models: str = "all") -> dict[str, dict]:
    """{model fine-tuned after the teacher: what it may learn besides the labels}: `logits`, the
    model whose fine-tuned logits it learns (see learns_from); `transfer` and `intermediate`,
    whether finetune.transfer and finetune.intermediate apply to it (their `models`: all, or
    the distilled ones only). Each finetune@ stage's command carries its record, so that a
    param that changes what one model learns reruns that model's stage alone."""
    check_models_setting(transfer_models, "finetune.transfer.models")
    check_models_setting(intermediate_models, "finetune.intermediate.models")
    distilled = distill_steps(teacher_layers, student_layers, steps)
    return {name: {"logits": source,
                   "transfer": setting_applies(transfer_models, name in distilled),
                   "intermediate": setting_applies(intermediate_models, name in distilled)}
            for name, source in learns_from(teacher_layers, student_layers, steps,
                                            logits_from).items()}


def plain_from(student_layers: int, plain: bool) -> dict[str, str]:
    """{the plain baseline: the encoder folder it is fine-tuned from} ({} with
    cascade.plain_baseline: false): the truncated baseline's, which the teacher stage cuts."""
    if not check_plain_baseline(plain):
        return {}
    return {plain_name(student_layers): baseline_name(student_layers)}


def _distilled_from(teacher_layers: int, student_layers: int, steps: int) -> dict[str, str]:
    return {name: s["from"] for name, s in distill_steps(teacher_layers, student_layers,
                                                         steps).items()}


# What params.yaml stores under `cascade` for dvc.yaml to loop over, computed by Hydra
# (hydra_plugins/, conf/config.yaml): key -> (function, the params it is computed from, in the
# order conf/config.yaml passes them). One stage per entry:
# distilled_from {model: predecessor}: distill@<model>;
# learns_from {model: fine_tuning record}: finetune@<model>;
# plain_from {plain baseline: encoder folder}: finetune-plain@<model> (none when switched off).
STORED = {
    "distilled_from": (_distilled_from,
                       ("teacher.layers", "cascade.student_layers", "cascade.steps")),
    "learns_from": (fine_tuning,
                    ("teacher.layers", "cascade.student_layers", "cascade.steps",
                     "cascade.logits_from", "finetune.transfer.models",
                     "finetune.intermediate.models")),
    "plain_from": (plain_from, ("cascade.student_layers", "cascade.plain_baseline")),
}


# what a params.yaml without these keys means (as the stages read it: settings.check_transfer ..)
DEFAULTS = {"cascade.logits_from": "teacher", "finetune.transfer.models": "all",
            "finetune.intermediate.models": "all"}


def param_at(params: dict, path: str):
    node = params
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            if path in DEFAULTS:
                return DEFAULTS[path]
            raise ConfigError(f"params.yaml: no {path}; compose it from conf/ "
                              "(`python -m kdcascade.compose`)")
        node = node[key]
    return node


def stored_value(key: str, *args):
    """One stored key from its params' values, wrapped in a one-item list: `dvc exp show` makes
    a column of every leaf of params.yaml and never splits a list, so the schedule takes one
    column per key whatever the step count (a dict keyed by model would add columns per model,
    blank for shorter cascades). dvc.yaml loops over `<key>[0]`."""
    return [STORED[key][0](*args)]


def stored(params: dict) -> dict:
    """Every STORED key as the params' values compute it (what Hydra writes)."""
    return {key: stored_value(key, *(param_at(params, p) for p in paths))
            for key, (_, paths) in STORED.items()}


def check_params(params: dict) -> None:
    """Refuse a params.yaml whose stored schedule disagrees with the params it is computed from.

    `dvc exp run` recomposes the schedule through Hydra; a hand-edited params.yaml read by plain
    `dvc repro` may not have, and the stages would then run a cascade nobody asked for.
    """
    want = stored(params)
    wrong = [key for key in STORED if params["cascade"].get(key) != want[key]]
    if wrong:
        sources = dict.fromkeys(p for key in wrong for p in STORED[key][1])
        raise ConfigError(
            f"params.yaml: {'/'.join(f'cascade.{key}' for key in wrong)} do not match "
            f"{', '.join(f'{p}={param_at(params, p)}' for p in sources)}; edit conf/ and run "
            "`dvc exp run`, or `python -m kdcascade.compose`")


def _shape(params: dict) -> tuple[int, int, int]:
    return (params["teacher"]["layers"], params["cascade"]["student_layers"],
            params["cascade"]["steps"])


def steps_of(params: dict) -> dict[str, dict]:
    """The distill steps of a checked params.yaml (see distill_steps)."""
    check_params(params)
    return distill_steps(*_shape(params))


def models_of(params: dict) -> dict[str, dict]:
    """Every model of a checked params.yaml, teacher first (see models)."""
    check_params(params)
    return models(*_shape(params), params["cascade"]["plain_baseline"])


def fine_tuning_of(params: dict) -> dict[str, dict]:
    """{model: its fine_tuning record} of a checked params.yaml (cascade.learns_from)."""
    check_params(params)
    return params["cascade"]["learns_from"][0]


def learns_from_of(params: dict) -> dict[str, str]:
    """{model: the model whose logits it learns} of a checked params.yaml (see learns_from)."""
    return {name: r["logits"] for name, r in fine_tuning_of(params).items()}


# assistants are several: named by depth
UNIQUE_ROLES = ("teacher", "student", "truncated", "plain")


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
