"""Checks of params sections that need neither a model nor a heavy library: a stage runs them
before it imports torch, so a bad param costs a fraction of a second."""

import json
import math
from pathlib import Path

from .errors import ConfigError
from .schedule import TRANSFER_MODELS

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
# ONNX Runtime's dynamic quantisation: the type the weights are stored in (activations are
# quantised per batch at run time); none exports the fp32 model only
QUANTIZATIONS = ("int8", "uint8", "none")
VOCABULARIES = ("full", "seen")
# a mean-pooling classifier is the encoder's folder plus these two files (kdcascade.heads)
HEAD_CONFIG = "classifier_head.json"
HEAD_WEIGHTS = "classifier_head.safetensors"


def positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_training_params(cfg: dict, stage: str) -> None:
    """The numbers of a training section (distill, finetune); the device is checked once torch
    is imported (training.check_device)."""
    if cfg.get("precision", "fp32") not in PRECISIONS:
        raise ConfigError(f"{stage}.precision={cfg['precision']!r}: expected one of "
                          f"{', '.join(PRECISIONS)}")
    for key in ("epochs", "batch_size", "processes", "gradient_accumulation"):
        if not positive_int(cfg.get(key, 1)):
            raise ConfigError(f"{stage}.{key}={cfg.get(key)!r}: expected a positive integer")
    for key in ("lr", "warmup"):
        value = cfg.get(key)
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value) or value < 0):
            raise ConfigError(f"{stage}.{key}={value!r}: expected a finite number >= 0")
    every = cfg.get("checkpoint_every", 0)
    if not (every == 0 or positive_int(every)):
        raise ConfigError(f"{stage}.checkpoint_every={every!r}: expected an integer >= 0 "
                          "(optimizer steps between checkpoints; 0 = none)")
    if not isinstance(cfg.get("group_by_length", False), bool):
        raise ConfigError(f"{stage}.group_by_length={cfg['group_by_length']!r}: expected "
                          "true or false")
    split = cfg.get("split_by_length", False)
    if not (split == "auto" or isinstance(split, bool)):
        raise ConfigError(f"{stage}.split_by_length={cfg['split_by_length']!r}: expected "
                          "auto, true or false")
    slices = cfg.get("processes", 1) * cfg.get("gradient_accumulation", 1)
    if cfg["batch_size"] < slices:
        raise ConfigError(f"{stage}.batch_size={cfg['batch_size']}: expected at least "
                          f"processes x gradient_accumulation = {slices} examples per "
                          "optimizer step (batch_size is the global batch)")


def check_rows(rows: int, cfg: dict, stage: str, where) -> None:
    """A split must give every process and accumulation step at least one row."""
    slices = cfg.get("processes", 1) * cfg.get("gradient_accumulation", 1)
    if rows < slices:
        raise ConfigError(f"{where}: {rows} rows; {stage}.processes x "
                          f"{stage}.gradient_accumulation needs at least {slices}")


def check_soft_labels(cfg: dict) -> tuple[float, float]:
    """(weight, temperature) of the soft-label term; weight 0 turns it off."""
    soft = cfg.get("soft_labels") or {}
    weight, temperature = soft.get("weight", 0.0), soft.get("temperature", 1.0)
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"finetune.soft_labels.weight={weight!r}: expected 0..1")
    if not temperature > 0:
        raise ConfigError(f"finetune.soft_labels.temperature={temperature!r}: expected > 0")
    return float(weight), float(temperature)



def check_transfer(cfg: dict) -> tuple[float, str]:
    """(weight, models) of finetune.transfer; weight 0 turns it off."""
    transfer = cfg.get("transfer") or {}
    weight, models = transfer.get("weight", 0.0), transfer.get("models", "all")
    if (not isinstance(weight, (int, float)) or isinstance(weight, bool)
            or not math.isfinite(weight) or weight < 0):
        raise ConfigError(f"finetune.transfer.weight={weight!r}: expected a number >= 0 (0 = off)")
    if models not in TRANSFER_MODELS:
        raise ConfigError(f"finetune.transfer.models={models!r}: expected one of "
                          f"{', '.join(TRANSFER_MODELS)}")
    return float(weight), models


def check_intermediate(cfg: dict) -> tuple[list, str]:
    """(objectives, models) of finetune.intermediate: TinyBERT's task distillation of the
    layers, terms in distill.objectives' syntax matching the fine-tuned teacher's hidden states
    (checked against the models by objectives.check_terms); an empty list turns it off."""
    section = cfg.get("intermediate") or {}
    objectives, models = section.get("objectives") or [], section.get("models", "all")
    if not isinstance(objectives, list):
        raise ConfigError(f"finetune.intermediate.objectives={objectives!r}: expected a list of "
                          "terms like {loss: hidden_nmse, map: skip, weight: 1.0} ([] = off)")
    if models not in TRANSFER_MODELS:
        raise ConfigError(f"finetune.intermediate.models={models!r}: expected one of "
                          f"{', '.join(TRANSFER_MODELS)}")
    return objectives, models


def teacher_signals(cfg: dict, logits: bool, transfer: bool, intermediate: bool) -> dict:
    """Which of the fine-tuned teacher's signals a model learns besides the labels, from the
    finetune section and what its stage is given: `logits` (a folder of the teacher's logits),
    `transfer` and `intermediate` (whether finetune.transfer and .intermediate apply to it:
    cascade.learns_from). Returns {soft_labels: its logits on the labeled rows (weight > 0),
    transfer: its logits on the transfer pairs (weight > 0), intermediate: its hidden states
    (objectives listed)}; all false for a model given none of them (the teacher, the plain
    baseline): plain cross-entropy on the labels."""
    soft_weight, _ = check_soft_labels(cfg)
    transfer_weight, _ = check_transfer(cfg)
    terms, _ = check_intermediate(cfg)
    return {"soft_labels": logits and soft_weight > 0,
            "transfer": logits and transfer and transfer_weight > 0,
            "intermediate": intermediate and bool(terms)}


def check_export_params(cfg: dict) -> str:
    """The export section: a non-empty list of model names or roles, the quantisation mode
    (returned) and whether weights get a scale per output channel."""
    items = cfg.get("models")
    if (not isinstance(items, list) or not items or len(set(map(str, items))) != len(items)
            or not all(isinstance(x, str) for x in items)):
        raise ConfigError(f"export.models={items!r}: expected a non-empty list of distinct "
                          "model names or roles (student, truncated, plain, teacher)")
    mode = cfg.get("quantization")
    if mode not in QUANTIZATIONS:
        raise ConfigError(f"export.quantization={mode!r}: expected one of "
                          f"{', '.join(QUANTIZATIONS)}")
    if not isinstance(cfg.get("per_channel"), bool):
        raise ConfigError(f"export.per_channel={cfg.get('per_channel')!r}: expected true or false")
    if cfg.get("vocabulary", "full") not in VOCABULARIES:
        raise ConfigError(f"export.vocabulary={cfg.get('vocabulary')!r}: expected full (every "
                          "token) or seen (the tokens of the prepared splits other than test)")
    return mode


# the prepared splits whose tokens a trimmed vocabulary keeps: never test, which measures it
SEEN_SPLITS = ("train", "dev", "distill", "transfer")


def seen_splits(prepared) -> list[Path]:
    """The files of SEEN_SPLITS in a prepared folder (export.vocabulary: seen); none is an
    error."""
    paths = [Path(prepared) / f"{split}.arrow" for split in SEEN_SPLITS]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise ConfigError(f"{prepared}: no {', '.join(SEEN_SPLITS)} split to take the "
                          "vocabulary from (export.vocabulary: seen); run the prepare stage first")
    return paths


def classifier_head_of(folder) -> str:
    """The head a fine-tuned model folder holds, `mean` or `cls`, read from its files alone;
    a folder without one (a bare encoder, a head's config without its weights) is refused,
    where loading it would give a randomly initialised head."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder}: no config.json; expected a fine-tuned model folder "
                          "(run the finetune stage first)")
    if (folder / HEAD_CONFIG).is_file():
        if not (folder / HEAD_WEIGHTS).is_file():
            raise ConfigError(f"{folder}: {HEAD_CONFIG} without {HEAD_WEIGHTS}: the mean-pooling "
                              "head's weights are missing")
        return "mean"
    architectures = json.loads((folder / "config.json").read_text()).get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "cls"
    raise ConfigError(f"{folder}: no classification head (neither {HEAD_WEIGHTS} nor a "
                      "*ForSequenceClassification config.json); expected a fine-tuned model, "
                      "not a bare encoder")
