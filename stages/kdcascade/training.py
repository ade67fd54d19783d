"""The optimisation loop shared by distillation and fine-tuning."""

import contextlib
import math
import time
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .errors import ConfigError


def device_of(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def optimizer_for(model: torch.nn.Module, lr: float, weight_decay: float,
                  extra: Iterable[torch.nn.Parameter] = ()) -> torch.optim.Optimizer:
    """AdamW over trainable parameters only, so frozen ones carry no optimizer state.

    No decay on biases and LayerNorm weights (BERT's convention).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    decay += [p for p in extra if p.requires_grad]
    if not decay and not no_decay:
        raise ConfigError("freeze: every parameter is frozen; nothing to train")
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(cfg: dict, device: torch.device):
    """Mixed precision through torch.amp: `precision: bf16` (CPU with AVX512-BF16/AMX, or GPU)
    or `fp16` (GPU); weights and optimizer state stay fp32, losses are computed in fp32."""
    dtype = PRECISIONS[cfg.get("precision", "fp32")]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def check_training_params(cfg: dict, stage: str) -> None:
    if cfg.get("precision", "fp32") not in PRECISIONS:
        raise ConfigError(f"{stage}.precision={cfg['precision']!r}: expected one of "
                          f"{', '.join(PRECISIONS)}")
    for key, kind in (("epochs", int), ("batch_size", int), ("lr", float), ("warmup", float)):
        value = cfg.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (
                kind is int and (value != int(value) or value < 1)):
            raise ConfigError(f"{stage}.{key}={value!r}: expected a positive {kind.__name__}")


def run_training(model: torch.nn.Module, loader, step_loss: Callable, cfg: dict, live,
                 desc: str, device: torch.device, extra_params: Iterable[torch.nn.Parameter] = (),
                 on_epoch_fraction: Callable | None = None, evals_per_epoch: int = 0) -> dict:
    """Train for cfg['epochs'] epochs; `step_loss(batch)` returns (loss, {term: value}).

    Logs every optimizer step to dvclive; calls `on_epoch_fraction(step)` `evals_per_epoch`
    times per epoch (fine-tuning uses it to pick the checkpoint on dev).
    Returns throughput figures for the metrics file.
    """
    extra_params = list(extra_params)
    optimizer = optimizer_for(model, cfg["lr"], cfg.get("weight_decay", 0.0), extra_params)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * cfg["epochs"]
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg["warmup"] * total), total)
    eval_at = ({math.ceil(steps_per_epoch * (k + 1) / evals_per_epoch) for k in
                range(evals_per_epoch)} if evals_per_epoch else set())
    model.train()
    examples, start, step = 0, time.perf_counter(), 0
    bar = tqdm(total=total, desc=desc, mininterval=2.0)
    for _epoch in range(cfg["epochs"]):
        for i, batch in enumerate(loader, start=1):
            with autocast(cfg, device):
                loss, terms = step_loss(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad]
                                           + extra_params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            examples += batch["input_ids"].shape[0]
            live.log_metric("train/loss", loss.item())
            for name, value in terms.items():
                live.log_metric(f"train/{name}", value)
            live.log_metric("train/lr", scheduler.get_last_lr()[0])
            if i in eval_at and on_epoch_fraction is not None:
                on_epoch_fraction(step)
                model.train()
            live.next_step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    bar.close()
    seconds = time.perf_counter() - start
    return {"optimizer_steps": step, "train_seconds": round(seconds, 2),
            "examples_per_second": round(examples / seconds, 1)}
