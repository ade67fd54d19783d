"""An attention kernel that records what distillation terms read, in the layers they read.

Hugging Face's eager attention returns post-softmax, post-dropout probabilities for every layer;
TinyBERT matches pre-softmax scores and MiniLM matches query/key/value relations, and most
layers are read by no term at all. Layers asked to record compute scores explicitly and store
them (and q, k, v where asked). Every other layer runs the fused sdpa kernel on GPU; on CPU the
explicit product is faster at NLI lengths (torch 2.13's CPU flash-attention backward took 30% of
a bf16 distill step here, benchmarks/distill_step.py), so it computes that too.
"""

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from .models import encoder_of

NAME = "kd_capture"


def capture_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                      **kwargs):
    wants = getattr(module, "kd_wants", ())
    if not wants and query.device.type != "cpu":
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      scaling=scaling, dropout=dropout, **kwargs)
    if "qkv" in wants:
        module.kd_record["qkv"] = (query, key, value)  # (B, heads, T, head_dim)
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask  # additive: finfo.min at padded keys
    if "scores" in wants:
        module.kd_record["scores"] = scores
    probs = scores.softmax(-1)
    if "probs" in wants:
        module.kd_record["probs"] = probs  # before dropout: the model's own attention
    probs = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, capture_attention)
AttentionMaskInterface.register(NAME, eager_mask)


def self_attentions(model) -> list[torch.nn.Module]:
    return [layer.attention.self for layer in encoder_of(model).encoder.layer]


def enable(model, wants: dict[int, set]) -> None:
    """Record `wants[i]` (subset of {"scores", "probs", "qkv"}) in 1-based layer i; other
    layers: sdpa."""
    model.set_attn_implementation(NAME)
    for i, attn in enumerate(self_attentions(model), start=1):
        attn.kd_wants = frozenset(wants.get(i, ()))
        attn.kd_record = {}


def recorded(model, layer: int) -> dict:
    return self_attentions(model)[layer - 1].kd_record
