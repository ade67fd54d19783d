"""Distillation objectives declared as data: a weighted sum of loss terms, each with a layer map.

A term in params looks like TextBrewer's intermediate matches:
    {loss: hidden_mse, map: shifted, weight: 1.0}
Layers are numbered as Hugging Face's `hidden_states` tuple: 0 is the embedding output,
i >= 1 the output of encoder layer i (and, for attention terms, the attention inside layer i).
"""

import math
from dataclasses import dataclass

import torch

from . import capture
from .errors import ConfigError
from .losses import Projection, get_loss

MAPS = ("shifted", "skip", "last", "uniform")
RELATIONS = ("query", "key", "value")
# what the capturing attention kernel must record for each feature
RECORDS = {"attention": "probs", "attention_scores": "scores", "qkv": "qkv"}


def layer_pairs(spec, student_layers: int, teacher_layers: int, where: str) -> list[tuple]:
    """(student layer, teacher layer) pairs for a map name or an explicit list of pairs.

    shifted: student layer i <-> teacher layer i + (T - S), for i = 1..S. With one layer removed
      this is the CAMeMBERT code's "student i, teacher i+1"; the embedding output (frozen in both,
      so a constant) is left out.
    skip: student layer i <-> teacher layer i below the top, and top <-> top: a drop_top student
      starts equal to the teacher's kept layers, which stay anchored there, and only its top
      layer learns the work of the removed ones.
    last: the final layers only (LightMBERT). uniform: student i <-> teacher round(i*T/S) (TinyBERT).
    """
    s_n, t_n = student_layers, teacher_layers
    if spec == "shifted":
        return [(i, i + t_n - s_n) for i in range(1, s_n + 1)]
    if spec == "skip":
        return [(i, i) for i in range(1, s_n)] + [(s_n, t_n)]
    if spec == "last":
        return [(s_n, t_n)]
    if spec == "uniform":
        return [(i, round(i * t_n / s_n)) for i in range(1, s_n + 1)]
    if isinstance(spec, (list, tuple)) and spec:
        pairs = []
        for pair in spec:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise ConfigError(f"{where}.map: {pair!r} is not a [student, teacher] pair")
            s, t = int(pair[0]), int(pair[1])
            if not (1 <= s <= s_n and 1 <= t <= t_n):
                raise ConfigError(f"{where}.map: pair [{s}, {t}] out of range; expected student "
                                  f"layer 1..{s_n} and teacher layer 1..{t_n}")
            pairs.append((s, t))
        return pairs
    raise ConfigError(f"{where}.map={spec!r}: expected one of {', '.join(MAPS)} or a list of "
                      "[student, teacher] layer pairs")


@dataclass
class Term:
    name: str
    loss: str
    feature: str
    pairs: list
    weight: float
    projection: torch.nn.Module | None = None
    options: dict | None = None
    widths: tuple[int, int] | None = None  # (student, teacher) where a projection maps them


def check_weight(value, where: str) -> float:
    # 0 is allowed: the term is logged without being trained on (a curve to watch)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value < 0):
        raise ConfigError(f"{where}.weight={value!r}: expected a finite number >= 0 "
                          "(0 logs the term without training on it)")
    return float(value)


def check_terms(specs: list[dict], student_config, teacher_config,
                param: str = "distill.objectives", features=None) -> list[Term]:
    """The terms of `specs` (the params list `param`), checked against the two models' configs
    (layers, widths, heads): a stage calls this with configs alone, so a bad objective fails
    before any weights load. `features`: the model outputs a term may read (None: any)."""
    if not isinstance(specs, (list, tuple)) or not specs:
        raise ConfigError(f"{param}={specs!r}: expected a list of at least one term")
    terms = []
    for k, spec in enumerate(specs):
        where = f"{param}[{k}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}={spec!r}: expected a term like "
                              "{loss: hidden_mse, map: shifted, weight: 1.0}")
        name = spec.get("loss")
        reads = get_loss(name).feature  # unknown name -> one clear error
        fn_feature = spec.get("feature", reads)
        if fn_feature != reads and {fn_feature, reads} != {"attention", "attention_scores"}:
            raise ConfigError(f"{where}.feature={fn_feature!r}: {name} reads "
                              f"'{reads}' (attention losses may read "
                              "'attention' probabilities or pre-softmax 'attention_scores')")
        if fn_feature == "logits":
            raise ConfigError(f"{where}.loss={name}: soft-label KL needs a task head; the "
                              "distill step matches encoders (task-agnostic distillation)")
        if features is not None and fn_feature not in features:
            raise ConfigError(f"{where}.loss={name}: reads '{fn_feature}'; here a term may read "
                              f"{', '.join(features)} only")
        weight = check_weight(spec.get("weight", 1.0), where)
        pairs = layer_pairs(spec.get("map", "shifted"), student_config.num_hidden_layers,
                            teacher_config.num_hidden_layers, where)
        term = Term(f"{name}_{k}" if len(specs) > 1 else name, name, fn_feature, pairs, weight,
                    options=_options(spec, fn_feature, teacher_config, where))
        s_w, t_w = student_config.hidden_size, teacher_config.hidden_size
        projection = spec.get("projection", False)
        if not isinstance(projection, bool) or (projection and fn_feature != "hidden"):
            raise ConfigError(f"{where}.projection={projection!r}: expected true or false, and "
                              "true only for a loss on hidden states")
        if fn_feature == "hidden" and s_w != t_w and not projection:
            raise ConfigError(f"{where}: student width {s_w} != teacher width {t_w}; "
                              "set projection: true to learn a linear map")
        if projection:  # also at equal widths: the student need not copy the coordinates
            term.widths = (s_w, t_w)
        terms.append(term)
    if not any(term.weight for term in terms):
        raise ConfigError(f"{param}: every weight is 0; nothing would be trained")
    return terms


def _options(spec, feature, teacher_config, where) -> dict:
    if feature != "qkv":
        return {}
    relations = spec.get("relations", list(RELATIONS))
    if not relations or set(relations) - set(RELATIONS):
        raise ConfigError(f"{where}.relations={relations!r}: expected a subset of {RELATIONS}")
    heads = int(spec.get("relation_heads", teacher_config.num_attention_heads))
    return {"relations": [RELATIONS.index(r) for r in relations], "heads": heads}


class Objective(torch.nn.Module):
    """The weighted sum of terms; holds the learned projections where widths differ."""

    def __init__(self, specs: list[dict], student_config, teacher_config,
                 param: str = "distill.objectives", features=None):
        super().__init__()
        self.terms = check_terms(specs, student_config, teacher_config, param, features)
        self.projections = torch.nn.ModuleDict()
        for term in self.terms:
            if term.widths is not None:
                self.projections[term.name] = Projection(*term.widths)
                term.projection = self.projections[term.name]

    def wants(self, side: int) -> dict[int, set]:
        """Per 1-based layer, what the attention kernel must record (side 0: student, 1: teacher)."""
        out: dict[int, set] = {}
        for term in self.terms:
            if term.feature in RECORDS:
                for pair in term.pairs:
                    out.setdefault(pair[side], set()).add(RECORDS[term.feature])
        return out

    def attach(self, student, teacher) -> None:
        """Switch both models to the recording kernel where a term reads attention internals."""
        for side, model in enumerate((student, teacher)):
            capture.enable(model, self.wants(side))

    @property
    def teacher_depth(self) -> int:
        """The highest teacher layer any term reads: the teacher need not run further."""
        return max(t for term in self.terms for _, t in term.pairs)

    def forward(self, student, teacher, student_out, teacher_out, mask,
                shares: dict | None = None) -> tuple[torch.Tensor, dict]:
        """The weighted sum and each term's value (detached); `*_out` are the models' outputs
        with hidden states, attention internals are read from what `attach` recorded.

        `shares` (kdcascade.batching): this slice's fraction of the global batch's examples,
        tokens and token pairs. Each term is scaled by its unit's share, so the slices' values
        add up to the global batch's. None: the slice is the whole batch.
        """
        total, logged = 0.0, {}
        for term in self.terms:
            fn = get_loss(term.loss)
            values = []
            for s, t in term.pairs:
                if term.feature == "hidden":
                    s_x, t_x = student_out.hidden_states[s], teacher_out.hidden_states[t]
                    if term.projection is not None:
                        s_x = term.projection(s_x)
                    values.append(fn(s_x, t_x, mask))
                elif term.feature == "qkv":
                    s_qkv = capture.recorded(student, s)["qkv"]
                    t_qkv = capture.recorded(teacher, t)["qkv"]
                    values += [fn(merge_heads(s_qkv[r]), merge_heads(t_qkv[r]), mask,
                                  term.options["heads"]) for r in term.options["relations"]]
                else:  # pre-dropout probabilities or pre-softmax scores
                    record = RECORDS[term.feature]
                    values.append(fn(capture.recorded(student, s)[record],
                                     capture.recorded(teacher, t)[record], mask))
            value = torch.stack(values).mean()
            if shares is not None:
                value = value * shares[get_loss(term.loss).unit]
            total = total + term.weight * value
            logged[term.name] = value.detach()
        return total, logged


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, d) -> (B, T, heads * d): relation heads may split the width differently."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)
