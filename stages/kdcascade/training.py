"""The optimisation loop shared by distillation and fine-tuning, under Hugging Face Accelerate.

One process or several (DDP: NCCL on GPUs, gloo on CPU); `batch_size` is the global batch of one
optimizer step, split over processes and gradient-accumulation steps by kdcascade.batching, so
the params mean the same update whatever the hardware. Mixed precision is torch.amp autocast
(bf16, or fp16 with a gradient scaler); weights and optimizer state stay fp32.
"""

import contextlib
import math
import re
import resource
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .batching import BatchPlan, MicroBatch
from .errors import ConfigError, Diverged

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MAX_GRAD_NORM = 1.0
FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where torch 2.13 has the fused AdamW kernel


def device_of(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: CPUs with bf16 instructions, whose bf16 matrix products beat fp32
    (elsewhere oneDNN emulates bf16 and gains little). Read from /proc/cpuinfo: Linux only."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 where the device computes it fast, else fp32."""
    if precision != "auto":
        return precision
    fast = (torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_fast_bf16())
    return "bf16" if fast else "fp32"


def autocast(precision: str, device: torch.device):
    dtype = DTYPES[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def optimizer_for(model: torch.nn.Module, lr: float, weight_decay: float,
                  fused: bool = True) -> torch.optim.Optimizer:
    """AdamW over trainable parameters only, so frozen ones carry no optimizer state.

    No decay on biases and LayerNorm weights (BERT's convention). Fused: one kernel a tensor
    instead of torch's default CPU loop of a dozen ops, the same update to float rounding
    (benchmarks/optimizer_step.py); on devices without the kernel, the default.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    if not decay and not no_decay:
        raise ConfigError("freeze: every parameter is frozen; nothing to train")
    fused = fused and all(p.device.type in FUSED_ADAMW_DEVICES for p in decay + no_decay)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr,
                             fused=fused or None)


def check_device(cfg: dict, stage: str) -> None:
    name, processes = cfg.get("device", "auto"), cfg.get("processes", 1)
    try:
        device = device_of(name)
    except RuntimeError as err:
        raise ConfigError(f"{stage}.device={name!r}: expected auto, cpu, cuda or cuda:N") from err
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{stage}.device={name!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if visible == 0:
            raise ConfigError(f"{stage}.device={name!r}: no CUDA device is visible")
        if device.index is not None and (processes > 1 or device.index >= visible):
            raise ConfigError(f"{stage}.device={name!r}: expected cuda:0..{visible - 1} and "
                              "processes: 1 (several processes take one GPU each)")
        if processes > visible:
            raise ConfigError(f"{stage}.processes={processes}: only {visible} CUDA devices "
                              "are visible (one process per GPU)")
    elif cfg.get("precision") == "fp16":
        raise ConfigError(f"{stage}.precision=fp16: needs a CUDA device; use bf16 on CPU")


def accelerator_for(cfg: dict):
    """The Accelerator of this process; inside `accelerate launch` it joins the process group."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    device = device_of(cfg.get("device", "auto"))
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    # some parameters (the pooler under mean pooling, layers above the highest matched one)
    # get no gradient: DDP must look for them instead of waiting forever
    return Accelerator(cpu=device.type == "cpu", mixed_precision="no",
                       kwargs_handlers=[DistributedDataParallelKwargs(
                           find_unused_parameters=True)])


class NullLive:
    """What processes other than the main one log to: nothing."""

    def __init__(self):
        self.summary = {}

    def log_metric(self, *args, **kwargs):
        pass

    def next_step(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@contextlib.contextmanager
def live_for(accelerator, folder: str, resume: bool = False):
    """dvclive on the main process (dvc.yaml declares its metrics and plots), nothing elsewhere.

    A block that fails removes the folder: half a run's logs must not pass for a stage's metrics
    (a checkpoint keeps its own copy to resume from).
    """
    if not accelerator.is_main_process:
        yield NullLive()
        return
    from dvclive import Live

    try:
        with Live(folder, dvcyaml=False, save_dvc_exp=False, resume=resume) as live:
            yield live
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


class Trainer:
    """Optimizer steps over `module`, whose forward(batch, shares) returns
    (loss, {term: value}) with every value already weighted by the slice's share."""

    def __init__(self, module: torch.nn.Module, cfg: dict, accelerator, total_steps: int):
        self.accelerator = accelerator
        self.device = accelerator.device
        self.precision = resolve_precision(cfg.get("precision", "fp32"), self.device)
        module.to(self.device)
        self.optimizer = optimizer_for(module, cfg["lr"], cfg.get("weight_decay", 0.0))
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(cfg["warmup"] * total_steps), total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.module = accelerator.prepare(module)
        self.params = [p for p in module.parameters() if p.requires_grad]

    def step(self, micro: list[MicroBatch]) -> dict[str, float]:
        """One optimizer step over this process's slices; returns the global batch's loss and
        terms (summed over slices and processes)."""
        acc, sums, names = self.accelerator, None, None
        for k, mb in enumerate(micro):
            # gradients are all-reduced once, after the last slice
            sync = contextlib.nullcontext() if k == len(micro) - 1 else acc.no_sync(self.module)
            with sync:
                batch = {name: t.to(self.device) for name, t in mb.batch.items()}
                with autocast(self.precision, self.device):
                    loss, terms = self.module(batch, mb.shares)
                # DDP averages gradients over processes; the slices' losses already add up
                self.scaler.scale(loss * acc.num_processes).backward()
            values = torch.stack([loss.detach().float(), *(v.float() for v in terms.values())])
            sums, names = (values if sums is None else sums + values), ["loss", *terms]
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scaler.get_scale() >= scale:  # fp16: a step skipped for overflow keeps the lr
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if acc.num_processes > 1:
            sums = acc.reduce(sums, reduction="sum")
        return dict(zip(names, sums.tolist()))


class Progress:
    """Where training stands; checkpointed with the rest of the state."""

    def __init__(self):
        self.step, self.first_loss = 0, None

    def state_dict(self) -> dict:
        return {"step": self.step, "first_loss": self.first_loss}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.first_loss = state["step"], state["first_loss"]


def run_facts(accelerator, cfg: dict, resumed_from_step: int) -> dict:
    """How a training stage ran, for the provenance beside its output."""
    return {"processes": accelerator.num_processes,
            "precision": resolve_precision(cfg.get("precision", "fp32"), accelerator.device),
            "resumed_from_step": resumed_from_step}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def check_finite(logged: dict[str, float], desc: str, step: int, total: int, lr: float) -> None:
    """Stop at the first non-finite loss. The values are already on the host for logging, so
    this costs no device sync."""
    bad = [f"{name}={value}" for name, value in logged.items() if not math.isfinite(value)]
    if bad:
        raise Diverged(f"{desc}: {', '.join(bad)} at optimizer step {step} of {total} with "
                       f"lr {lr:g}: training diverged (lower the lr); nothing saved")


def check_finite_weights(trainer: Trainer, desc: str, total: int, lr: float) -> None:
    """The last step's update can turn weights non-finite after a finite loss; one sync, once."""
    if not torch.stack([p.detach().isfinite().all() for p in trainer.params]).all():
        raise Diverged(f"{desc}: non-finite weights after optimizer step {total} of {total} "
                       f"with lr {lr:g}: training diverged (lower the lr); nothing saved")


def run_training(trainer: Trainer, plan: BatchPlan, cfg: dict, live, desc: str, seed: int,
                 checkpoints=None, on_eval: Callable | None = None, evals_per_epoch: int = 0,
                 state: Iterable = ()) -> dict:
    """Train for cfg['epochs'] epochs, logging every optimizer step to dvclive.

    Calls `on_eval(step)` `evals_per_epoch` times per epoch (fine-tuning chooses its checkpoint
    on dev). With `checkpoints` (kdcascade.checkpoints), saves every checkpoint_every steps and
    resumes from a matching checkpoint; `state` holds further objects to checkpoint.
    Returns throughput figures of the steps this run did, and the first batch's loss.
    A non-finite loss or final weight raises Diverged and removes the checkpoints: a diverged
    run is not resumed.
    """
    from accelerate.utils import set_seed

    acc, progress = trainer.accelerator, Progress()
    per_epoch = len(plan)
    total = per_epoch * cfg["epochs"]
    acc.register_for_checkpointing(trainer.optimizer, trainer.scheduler, trainer.scaler,
                                   progress, *state)
    set_seed(seed, device_specific=True)  # dropout differs between processes
    if checkpoints is not None:
        checkpoints.restore()
    eval_at = ({math.ceil(per_epoch * (k + 1) / evals_per_epoch) for k in range(evals_per_epoch)}
               if evals_per_epoch and on_eval else set())
    trainer.module.train()
    bar = tqdm(total=total, initial=progress.step, desc=desc, mininterval=2.0,
               disable=not acc.is_main_process)
    examples, start, resumed_at = 0, time.perf_counter(), progress.step
    batches, batches_epoch = [], None
    try:
        while progress.step < total:
            epoch, i = divmod(progress.step, per_epoch)
            if epoch != batches_epoch:
                batches, batches_epoch = plan.global_batches(epoch), epoch
            logged = trainer.step(plan.micro_batches(batches[i]))
            progress.step += 1
            # before any logging, evaluation or checkpoint of this step
            check_finite(logged, desc, progress.step, total, cfg["lr"])
            if progress.first_loss is None:
                progress.first_loss = logged["loss"]
            examples += len(batches[i])
            for name, value in logged.items():
                live.log_metric(f"train/{name}", value)
            live.log_metric("train/lr", trainer.scheduler.get_last_lr()[0])
            if i + 1 in eval_at:
                on_eval(progress.step)
                trainer.module.train()
            live.next_step()
            bar.update()
            bar.set_postfix(loss=f"{logged['loss']:.4f}", refresh=False)
            if checkpoints is not None:
                checkpoints.maybe_save(progress.step, total)
        check_finite_weights(trainer, desc, total, cfg["lr"])
    except Diverged:
        if checkpoints is not None:
            checkpoints.finish()
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    if resumed_at:
        acc.print(f"{desc}: resumed at step {resumed_at}; throughput is of the remaining steps")
    return {"optimizer_steps": total, "train_seconds": round(seconds, 2),
            "examples_per_second": round(examples / max(seconds, 1e-9), 1),
            "peak_memory_mb": peak_memory_mb(trainer.device),
            "first_batch_loss": round(progress.first_loss, 6)}
