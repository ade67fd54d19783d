"""Distillation loss terms, as a registry keyed by the names used in ``distill.objectives``.

Shapes: hidden / q,k,v (B, T, H); attention probabilities or scores (B, heads, T, T);
attention_mask (B, T), 1 = real token, 0 = padding; logits (B, C).

Conventions shared by every loss:
  * computed in fp32 whatever the input dtype (fp32, bf16, fp16); returns a 0-dim fp32 tensor;
  * the teacher is a fixed target: its tensors are detached, gradients reach the student only;
  * padded positions are removed with ``torch.where``/``masked_fill`` *before* any arithmetic,
    so values there (even ``finfo.min`` or inf) never reach the loss or its gradient;
  * token-level averages are taken over all valid tokens of the batch (not per sequence), and
    over heads; a sequence with no real token contributes nothing; an all-padding batch gives 0.

Each loss is a mean over one kind of unit of the batch (its record's `unit`): examples, real tokens, or
(query, key) pairs of real tokens. A slice of a batch weighted by its share of those units adds up
to the whole batch's value, which is how several processes and accumulation steps reproduce one
large batch (kdcascade.batching).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from kdcascade.errors import ConfigError

EPS = 1e-12  # clamp for log() of zero probabilities in attention_kl


@dataclass(frozen=True)
class Loss:
    """A registered loss: its function, the model output it reads (`feature`: hidden,
    attention, attention_scores, qkv, logits) and the unit it averages over (`unit`: example,
    token or token_pair), which kdcascade.batching uses to weigh slices of a batch."""
    name: str
    fn: Callable[..., torch.Tensor]
    feature: str
    unit: str

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return self.fn(*args, **kwargs)


LOSSES: dict[str, Loss] = {}


def register_loss(name: str, feature: str, unit: str):
    """Add the decorated function to LOSSES under `name`: one record per loss."""
    def add(fn):
        LOSSES[name] = Loss(name, fn, feature, unit)
        return fn
    return add


def masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(values * weights) / sum(weights); entries with weight 0 are dropped (never 0*inf), 0 if none."""
    weights = weights.to(torch.float32).expand_as(values)
    values = torch.where(weights > 0, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def _prep(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None):
    if student.shape != teacher.shape:
        raise ValueError(f"student shape {tuple(student.shape)} != teacher shape {tuple(teacher.shape)}")
    s, t = student.float(), teacher.detach().float()
    return (s, t) if mask is None else (s, t, mask.to(device=s.device) != 0)


@register_loss("hidden_mse", feature="hidden", unit="token")
def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT hidden-state MSE over real tokens: sum (s-t)^2 / (n_valid_tokens * H)."""
    s, t, m = _prep(student, teacher, mask)
    m3 = m.unsqueeze(-1)
    diff = torch.where(m3, s, 0.0) - torch.where(m3, t, 0.0)
    return masked_mean(diff.pow(2).mean(-1), m)


@register_loss("hidden_nmse", feature="hidden", unit="token")
def hidden_nmse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalised hidden-state MSE over real tokens: ||s - t||^2 / ||t||^2 per token, averaged.

    Scale-free: a layer with small activations (multilingual-e5's top layer has a quarter of the
    variance of the others) weighs as much as any other in a map, and the value reads as the
    fraction of the teacher's vector the student misses.
    """
    s, t, m = _prep(student, teacher, mask)
    m3 = m.unsqueeze(-1)
    s, t = torch.where(m3, s, 0.0), torch.where(m3, t, 1.0)
    ratio = (s - t).pow(2).sum(-1) / t.pow(2).sum(-1).clamp_min(EPS)
    return masked_mean(ratio, m)


@register_loss("hidden_cosine", feature="hidden", unit="token")
def hidden_cosine(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens of 1 - cos(s_tok, t_tok) (DistilBERT cosine-embedding loss, target +1)."""
    s, t, m = _prep(student, teacher, mask)
    m3 = m.unsqueeze(-1)
    cos = F.cosine_similarity(torch.where(m3, s, 1.0), torch.where(m3, t, 1.0), dim=-1, eps=1e-8)
    return masked_mean(1.0 - cos, m)


@register_loss("attention_kl", feature="attention", unit="token")  # query rows
def attention_kl(student_probs: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LightMBERT/MiniLM attention KL(teacher || student) per query row, over real keys only.

    Inputs are post-softmax probabilities. log() uses clamp(p, EPS=1e-12), so a teacher zero adds
    exactly 0 and a student zero costs at most -log(1e-12). Rows are not renormalised over real keys.
    Averaged over heads and real query rows of the whole batch (vectorised over batch and heads).
    """
    s, t, m = _prep(student_probs, teacher_probs, mask)
    keys, queries = m[:, None, None, :], m[:, None, :, None]
    pair = keys & queries
    s = torch.where(pair, s, 1.0).clamp_min(EPS)
    t = torch.where(pair, t, 0.0)
    row_kl = (t * (t.clamp_min(EPS).log() - s.log())).sum(-1)  # (B, heads, T)
    return masked_mean(row_kl, m[:, None, :])


@register_loss("attention_mse", feature="attention_scores", unit="token_pair")
def attention_mse(student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT attention MSE on scores (pre- or post-softmax, caller's choice).

    Only entries whose query and key are both real count; masked entries (HF puts finfo.min there)
    are zeroed before subtraction. Mean over heads and valid (query, key) entries.
    """
    s, t, m = _prep(student_scores, teacher_scores, mask)
    pair = (m[:, :, None] & m[:, None, :]).unsqueeze(1)  # (B, 1, T, T)
    diff = torch.where(pair, s, 0.0) - torch.where(pair, t, 0.0)
    return masked_mean(diff.pow(2), pair)


@register_loss("logits_kl", feature="logits", unit="example")
def logits_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
              scale_by_t2: bool = True, per_row: bool = False) -> torch.Tensor:
    """Hinton soft-label loss KL(softmax(t/T) || softmax(s/T)), 'batchmean' (sum / B), or one
    value per row (fine-tuning weighs labeled rows and transfer pairs apart).

    Multiplied by T^2 when scale_by_t2 (Hinton et al. 2015 / DistilBERT), keeping gradient
    magnitudes independent of T.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s, t = _prep(student_logits, teacher_logits)
    log_ps, log_pt = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    rows = F.kl_div(log_ps, log_pt, reduction="none", log_target=True).sum(-1)
    loss = rows if per_row else rows.sum() / len(rows)
    return loss * temperature**2 if scale_by_t2 else loss


def _relation_logprobs(x: torch.Tensor, m: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, t, h = x.shape
    if h % n_heads:
        raise ValueError(f"width {h} is not divisible by num_relation_heads={n_heads}")
    d = h // n_heads
    x = x.view(b, t, n_heads, d).transpose(1, 2)  # (B, n, T, d)
    scores = x @ x.transpose(-1, -2) / math.sqrt(d)
    scores = scores.masked_fill(~m[:, None, None, :], torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)


@register_loss("minilm_relation", feature="qkv", unit="token")  # query rows
def minilm_relation(student_qkv: torch.Tensor, teacher_qkv: torch.Tensor, mask: torch.Tensor,
                    num_relation_heads: int) -> torch.Tensor:
    """MiniLM-v2 self-attention relation loss for one of Q, K or V.

    X (B, T, H) is split into num_relation_heads heads of width H/n (student and teacher widths may
    differ), R = softmax(X X^T / sqrt(d_head)) with padding keys masked; returns
    KL(R_teacher || R_student) averaged over relation heads and real query rows.
    """
    if student_qkv.shape[:2] != teacher_qkv.shape[:2]:
        raise ValueError(f"student {tuple(student_qkv.shape)} and teacher {tuple(teacher_qkv.shape)} differ in (B, T)")
    m = mask.to(device=student_qkv.device) != 0
    student_qkv, teacher_qkv = (torch.where(m[..., None], x, 0) for x in (student_qkv, teacher_qkv))
    log_s = _relation_logprobs(student_qkv.float(), m, num_relation_heads)
    log_t = _relation_logprobs(teacher_qkv.detach().float(), m, num_relation_heads)
    pair = m[:, None, None, :] & m[:, None, :, None]
    log_s, log_t = torch.where(pair, log_s, 0.0), torch.where(pair, log_t, 0.0)  # no -inf - -inf
    terms = torch.where(pair, log_t.exp(), 0.0) * (log_t - log_s)
    return masked_mean(terms.sum(-1), m[:, None, :])


class Projection(torch.nn.Module):
    """Learned linear map student width -> teacher width (TinyBERT's W_h), applied on the last dim."""

    def __init__(self, student_dim: int, teacher_dim: int, bias: bool = True):
        super().__init__()
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.linear = torch.nn.Linear(student_dim, teacher_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.to(self.linear.weight.dtype))


def get_loss(name: str) -> Loss:
    """Look a loss up by name; unknown names raise ConfigError listing the valid ones."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"distill.objectives: unknown loss {name!r}; expected one of {', '.join(sorted(LOSSES))}"
        ) from None
