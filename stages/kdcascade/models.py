"""Loading the teacher, truncating a model into a student, freezing parameters."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch

# the tokenizer and config alone (the prepare stage) do not import transformers' modeling code,
# which takes seconds: AutoModel is imported where a model is loaded
from transformers import AutoConfig, AutoTokenizer

from . import runtime
from .errors import ConfigError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

TEACHER_SOURCES = ("package", "hub", "local")


def teacher_location(source: str, name: str) -> str:
    """Where `from_pretrained` finds the teacher: a hub id, a folder, or a package's folder."""
    if source == "hub":
        return name
    if source == "local":
        if not (Path(name) / "config.json").is_file():
            raise ConfigError(f"teacher.name={name!r}: expected a folder with config.json "
                              "(a Hugging Face model saved with save_pretrained)")
        return name
    if source == "package":
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"teacher.name={name!r}: package not installed ({err}); "
                              "expected an installed package with get_model_path()") from err
        if not hasattr(module, "get_model_path"):
            raise ConfigError(f"teacher.name={name!r}: the package has no get_model_path()")
        return str(module.get_model_path())
    raise ConfigError(f"teacher.source={source!r}: expected one of {', '.join(TEACHER_SOURCES)}")


def load_config(folder) -> PretrainedConfig:
    """A model folder's config.json alone, no weights: enough to check params against it."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; expected a model folder saved with save_pretrained "
                          "(run the stage that makes it first)")
    return AutoConfig.from_pretrained(str(folder))


def load_encoder(location: str, attentions: bool = False) -> PreTrainedModel:
    """The bare encoder (no task head). Eager attention where a loss reads attention maps:
    the default sdpa kernel returns no attention probabilities in transformers 5."""
    from transformers import AutoModel

    kwargs = {"attn_implementation": "eager"} if attentions else {}
    return AutoModel.from_pretrained(location, **kwargs)


def attention_kernel_for(device: torch.device) -> str:
    """The attention implementation to train with: fused sdpa on GPU; on CPU the explicit
    product, because torch 2.13's CPU flash-attention backward is slow at NLI lengths, most in
    bf16 (fine-tuning all-MiniLM-L6-v2 here: 1.34x faster with it in bf16, equal in fp32)."""
    return "sdpa" if device.type == "cuda" else "eager"


def load_tokenizer(location: str):
    return AutoTokenizer.from_pretrained(location)


def save_model(model, folder, tokenizer, stage: str, params: dict) -> None:
    """A model with its tokenizer and provenance, written whole or not at all."""
    with runtime.atomic_dir(folder) as tmp:
        model.cpu().save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        runtime.write_provenance(tmp, stage, params)


def encoder_of(model: PreTrainedModel) -> torch.nn.Module:
    """The transformer body, whether `model` is a bare encoder or has a task head."""
    return getattr(model, model.base_model_prefix, model)


def stop_at(teacher: torch.nn.Module, depth: int) -> torch.nn.Module:
    """Keep only the teacher layers up to `depth`: layers above the highest matched one are
    never run. The teacher is private to its stage (distillation, fine-tuning with
    intermediate-layer terms), so it is cut in place."""
    body = encoder_of(teacher)
    body.encoder.layer = body.encoder.layer[:depth]
    teacher.config.num_hidden_layers = depth
    return teacher


def num_layers(model: PreTrainedModel) -> int:
    return model.config.num_hidden_layers


def select_layers(init, n_from: int, n_to: int, param: str = "distill.init") -> list[int]:
    """0-based indices of the layers a student keeps.

    drop_top / bottom: the bottom n_to layers (CAMeMBERT drops the top; LightMBERT keeps the
    teacher's bottom); uniform: evenly spread, top layer included (DistilBERT's every other);
    a list: explicit teacher layer indices.
    """
    if init in ("drop_top", "bottom"):
        keep = list(range(n_to))
    elif init == "uniform":
        keep = [round((i + 1) * n_from / n_to) - 1 for i in range(n_to)]
    elif isinstance(init, (list, tuple)):
        keep = [int(i) for i in init]
        if len(keep) != n_to or sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= n_from:
            raise ConfigError(f"{param}={list(init)}: expected {n_to} increasing layer indices "
                              f"in 0..{n_from - 1}")
    else:
        raise ConfigError(f"{param}={init!r}: expected drop_top, bottom, uniform or a list of "
                          "layer indices")
    return keep


def truncate(model: PreTrainedModel, keep: list[int]) -> PreTrainedModel:
    """A copy of `model` with only the encoder layers in `keep`; every other weight is copied."""
    student = copy.deepcopy(model)
    layers = encoder_of(student).encoder.layer
    encoder_of(student).encoder.layer = torch.nn.ModuleList(layers[i] for i in keep)
    student.config.num_hidden_layers = len(keep)
    for i, layer in enumerate(encoder_of(student).encoder.layer):
        # layer_idx is read by attention caches; keep it consistent with the new position
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    return student


def freeze(model: torch.nn.Module, patterns: list[str]) -> list[str]:
    """Freeze parameters whose name contains any pattern; return their names.

    Both papers freeze everything named `embed` (word, position, token-type embeddings and the
    embedding LayerNorm), so the multilingual vocabulary is never disturbed by English data.
    """
    frozen = []
    for name, param in model.named_parameters():
        if any(p in name for p in patterns):
            param.requires_grad_(False)
            frozen.append(name)
    if patterns and not frozen:
        raise ConfigError(f"freeze={patterns}: no parameter name contains any of these")
    return frozen


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    embed = sum(p.numel() for n, p in model.named_parameters() if "embed" in n)
    return {"total": total, "embeddings": embed, "encoder": total - embed}
