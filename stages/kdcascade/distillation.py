"""One distillation step: the student learns to reproduce its predecessor's internal states."""

import torch

from . import models
from .objectives import Objective
from .training import run_training


def stop_at(teacher: torch.nn.Module, depth: int) -> torch.nn.Module:
    """Keep only the teacher layers up to `depth`: layers above the highest matched one are
    never run. The teacher is private to the stage, so it is cut in place."""
    body = models.encoder_of(teacher)
    body.encoder.layer = body.encoder.layer[:depth]
    teacher.config.num_hidden_layers = depth
    return teacher


def model_inputs(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items() if k != "labels"}


def distill(student, teacher, objective: Objective, loader, cfg: dict, live, device,
            desc: str = "distill") -> dict:
    """Train `student` to match `teacher` under `objective`; returns throughput and first loss."""
    teacher = stop_at(teacher, objective.teacher_depth).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student.to(device)
    objective.to(device)
    objective.attach(student, teacher)
    first = {}

    def step_loss(batch):
        inputs = model_inputs(batch, device)
        # no_grad, not inference_mode: inference tensors cannot be loss targets in autograd
        with torch.no_grad():
            t_out = teacher(**inputs, output_hidden_states=True)
        s_out = student(**inputs, output_hidden_states=True)
        loss, terms = objective(student, teacher, s_out, t_out, inputs["attention_mask"])
        if not first:
            first["first_batch_loss"] = round(loss.item(), 6)
        return loss, terms

    stats = run_training(student, loader, step_loss, cfg, live, desc, device,
                         extra_params=objective.parameters())
    return {**stats, **first}
