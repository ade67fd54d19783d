"""One distillation step: the student learns to reproduce its predecessor's internal states."""

import copy

import torch

from . import models
from .batching import plan_for
from .models import stop_at
from .objectives import Objective, check_terms
from .training import Trainer, run_training


def check_objective(specs: list[dict], teacher_dir, student_layers: int) -> None:
    """The objective against the teacher's config.json before any weights are loaded; the
    student is a truncation of a model as wide as the teacher, with `student_layers` layers."""
    teacher_config = models.load_config(teacher_dir)
    student_config = copy.deepcopy(teacher_config)
    student_config.num_hidden_layers = student_layers
    check_terms(specs, student_config, teacher_config)


def model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "labels"}


class DistillModule(torch.nn.Module):
    """What is trained: the student and the objective's projections.

    The teacher runs inside forward, under no_grad (not inference_mode: inference tensors cannot
    be loss targets in autograd), but is kept out of the module's parameters and train/eval
    switches, so DDP neither broadcasts nor synchronises it and it never drops out.
    """

    def __init__(self, student, teacher, objective: Objective):
        super().__init__()
        self.student, self.objective = student, objective
        object.__setattr__(self, "teacher", teacher)

    def forward(self, batch: dict, shares: dict | None = None):
        inputs = model_inputs(batch)
        with torch.no_grad():
            t_out = self.teacher(**inputs, output_hidden_states=True)
        s_out = self.student(**inputs, output_hidden_states=True)
        return self.objective(self.student, self.teacher, s_out, t_out,
                              inputs["attention_mask"], shares)


def distill_module(student, teacher, objective: Objective, device) -> DistillModule:
    """Cut the teacher at the highest layer a term reads, freeze it, switch both models to the
    recording attention kernel where terms read attention internals."""
    teacher = stop_at(teacher, objective.teacher_depth).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    objective.attach(student, teacher)
    return DistillModule(student, teacher, objective)


def distill(student, teacher, objective: Objective, sentences, cfg: dict, live, accelerator,
            seed: int, desc: str = "distill", checkpoints=None) -> dict:
    """Train `student` to match `teacher` under `objective` on the tokenized `sentences`;
    returns throughput figures and the first batch's loss."""
    module = distill_module(student, teacher, objective, accelerator.device)
    plan = plan_for(sentences, cfg, student.config.pad_token_id, seed, accelerator)
    trainer = Trainer(module, cfg, accelerator, len(plan) * cfg["epochs"])
    return run_training(trainer, plan, cfg, live, desc, seed, checkpoints)
