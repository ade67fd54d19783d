"""Fine-tuning on NLI with the checkpoint chosen on dev, and prediction."""

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForSequenceClassification

from . import data, heads
from .errors import ConfigError
from .losses import logits_kl
from .labels import LABEL_IDS, LABELS
from .training import run_training

POOLINGS = ("cls", "mean")


def load_classifier(location: str, pooling: str | None = None):
    """An encoder with a 3-way NLI head. `cls`: Hugging Face's BertForSequenceClassification
    (CLS + pooler); `mean`: mean over real tokens (heads.MeanPoolingClassifier).
    None: whatever head the folder was fine-tuned with."""
    if pooling is None:
        pooling = "mean" if heads.has_mean_head(location) else "cls"
    if pooling == "mean":
        return heads.MeanPoolingClassifier.from_pretrained(location, list(LABELS))
    if pooling != "cls":
        raise ConfigError(f"finetune.pooling={pooling!r}: expected one of {', '.join(POOLINGS)}")
    return AutoModelForSequenceClassification.from_pretrained(
        location, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id=LABEL_IDS)


@torch.no_grad()
def predict(model, df: pd.DataFrame, batch_size: int, device) -> np.ndarray:
    model.to(device).eval()
    preds = []
    for batch in data.loader(df, batch_size, model.config.pad_token_id):
        batch.pop("labels", None)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        preds.append(logits.argmax(-1).cpu().numpy())
    return np.concatenate(preds)


def selection_rows(dev: pd.DataFrame, select_on) -> pd.DataFrame:
    """The dev rows that choose the checkpoint: English (`en`), every language (`all`), or a list."""
    if select_on == "all":
        return dev
    langs = [select_on] if isinstance(select_on, str) else list(select_on)
    missing = sorted(set(langs) - set(dev.language))
    if missing:
        raise ConfigError(f"finetune.select_on={select_on!r}: no dev rows for {missing}; "
                          f"dev has {sorted(set(dev.language))}")
    return dev[dev.language.isin(langs)].reset_index(drop=True)


def check_soft_labels(cfg: dict) -> tuple[float, float]:
    """(weight, temperature) of the soft-label term; weight 0 turns it off."""
    soft = cfg.get("soft_labels") or {}
    weight, temperature = soft.get("weight", 0.0), soft.get("temperature", 1.0)
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"finetune.soft_labels.weight={weight!r}: expected 0..1")
    if not temperature > 0:
        raise ConfigError(f"finetune.soft_labels.temperature={temperature!r}: expected > 0")
    return float(weight), float(temperature)


def finetune(model, train: pd.DataFrame, dev: pd.DataFrame, cfg: dict, live, device,
             seed: int, desc: str = "finetune", teacher=None) -> dict:
    """Train on `train`; keep the weights with the best dev accuracy (%; ties: the earlier one).

    With a fine-tuned `teacher` and finetune.soft_labels.weight w > 0 the loss is
    (1 - w) * cross-entropy + w * KL(teacher || student) at temperature T, times T^2
    (task-specific distillation, Hinton / DistilBERT convention).
    Only dev is read for selection: the test split never enters this function.
    """
    model.to(device)
    best = {"dev_accuracy": -1.0, "step": 0}
    state = {}
    weight, temperature = check_soft_labels(cfg)
    if teacher is not None:
        teacher.to(device).eval()

    def step_loss(batch):
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(**batch)
        if teacher is None or weight == 0:
            return out.loss, {}
        with torch.no_grad():
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            teacher_logits = teacher(**inputs).logits
        soft = logits_kl(out.logits, teacher_logits, temperature)
        return (1 - weight) * out.loss + weight * soft, {"cross_entropy": out.loss.item(),
                                                          "soft_label_kl": soft.item()}

    def evaluate_dev(step):
        correct = predict(model, dev, cfg["batch_size"] * 2, device) == dev.label.to_numpy()
        acc = round(100.0 * float(correct.mean()), 2)
        live.log_metric("dev/accuracy", acc)
        if acc > best["dev_accuracy"]:
            best.update(dev_accuracy=acc, step=step)
            state["weights"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    batches = data.loader(train, cfg["batch_size"], model.config.pad_token_id, shuffle=True,
                          seed=seed)
    stats = run_training(model, batches, step_loss, cfg, live, desc, device,
                         on_epoch_fraction=evaluate_dev,
                         evals_per_epoch=cfg.get("evals_per_epoch", 1))
    model.load_state_dict(state["weights"])
    return {**stats, "best_dev_accuracy": best["dev_accuracy"], "best_step": best["step"]}

