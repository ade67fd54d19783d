"""Fine-tuning on NLI with the checkpoint chosen on dev, and prediction."""

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from . import data, heads, models, settings
from .batching import plan_for
from .errors import ConfigError
from .labels import LABEL_IDS, LABELS
from .losses import logits_kl
from .objectives import Objective, check_terms
from .training import Trainer, run_training

POOLINGS = ("cls", "mean")
UNLABELED = -100  # the label of a transfer pair: no cross-entropy, the teacher's KL only
INTERMEDIATE = "finetune.intermediate.objectives"


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


def logits_in_row_order(forward, rows, batch_size: int, pad_token_id: int) -> np.ndarray:
    """forward(batch of padded tensors) -> numpy logits, for every row (data.Rows or a frame),
    in row order. Rows are batched in order of length, so a batch pads little (NLI pairs padded
    to their batch's longest in row order hold 2x the tokens). Shared by PyTorch and ONNX
    Runtime prediction."""
    rows = data.as_rows(rows)
    order = np.argsort(rows.lengths, kind="stable")
    parts = []
    for batch in data.loader(rows.select(order), batch_size, pad_token_id):
        batch.pop("labels", None)
        batch.pop("teacher_logits", None)
        parts.append(forward(batch))
    out = np.empty((len(rows), len(LABELS)), dtype=np.float32)
    out[order] = np.concatenate(parts) if parts else []
    return out


@torch.no_grad()
def logits(model, rows, batch_size: int, device) -> np.ndarray:
    """The model's logits (fp32) of every row, in row order."""
    model.to(device).eval()
    return logits_in_row_order(
        lambda batch: model(**{k: v.to(device) for k, v in batch.items()}
                            ).logits.float().cpu().numpy(),
        rows, batch_size, model.config.pad_token_id)


def predict(model, rows, batch_size: int, device) -> np.ndarray:
    """Predicted label of every row, in row order."""
    return logits(model, rows, batch_size, device).argmax(-1)


def selection_rows(dev, select_on) -> data.Rows:
    """The dev rows that choose the checkpoint: English (`en`), every language (`all`), or a list."""
    dev = data.as_rows(dev)
    if select_on == "all":
        return dev
    langs = [select_on] if isinstance(select_on, str) else list(select_on)
    present = sorted(set(dev.column("language")))
    missing = sorted(set(langs) - set(present))
    if missing:
        raise ConfigError(f"finetune.select_on={select_on!r}: no dev rows for {missing}; "
                          f"dev has {present}")
    return dev.select(dev.positions_in("language", langs))


class FinetuneModule(torch.nn.Module):
    """What is trained: the classifier. With soft labels on, each row of the batch carries the
    fine-tuned teacher's logits (`teacher_logits`, computed once by the teacher's stage: no
    teacher forward here) and each labeled row's loss is
    (1 - w) * cross-entropy + w * KL(teacher || student) at temperature T, times T^2
    (task-specific distillation, Hinton / DistilBERT convention), and each unlabeled row's
    (label -100, the transfer pairs) is `transfer` * the same KL. The batch loss is the mean
    over rows, so a row weighs the same whichever batch or process it lands in.

    With a `teacher` encoder and an `objective` (finetune.intermediate: TinyBERT's task
    distillation of the layers) the fine-tuned teacher runs on every batch, under no_grad and
    outside the module's parameters as in distillation.DistillModule, and the objective's
    weighted terms on the two models' hidden states are added to the loss."""

    def __init__(self, model, weight: float = 0.0, temperature: float = 1.0,
                 transfer: float = 0.0, teacher=None, objective=None):
        super().__init__()
        self.model, self.weight, self.temperature, self.transfer = model, weight, temperature, transfer
        self.soft = weight > 0 or transfer > 0
        self.objective = objective  # a submodule: its projections, if any, train with the model
        object.__setattr__(self, "teacher", teacher)

    def forward(self, batch: dict, shares: dict | None = None):
        share = 1.0 if shares is None else shares["example"]
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits")}
        labels = batch["labels"]
        labeled = (labels != UNLABELED).float()
        layers = self.objective is not None
        out = self.model(**inputs, output_hidden_states=layers)
        logits = out.logits.float()
        ce = F.cross_entropy(logits, labels.clamp_min(0), reduction="none") * labeled
        rows = share / len(labels)
        if not (self.soft or layers):
            return ce.sum() * rows, {}
        # logged weighted, so the terms add up to the loss
        terms = {"cross_entropy": (1 - self.weight) * ce}
        if self.soft:
            kl = logits_kl(logits, batch["teacher_logits"], self.temperature, per_row=True)
            terms["soft_label_kl"] = self.weight * kl * labeled
            if self.transfer > 0:
                terms["transfer_kl"] = self.transfer * kl * (1 - labeled)
        terms = {k: v.sum() * rows for k, v in terms.items()}
        loss = sum(terms.values())
        logged = {k: v.detach() for k, v in terms.items()}
        if layers:
            with torch.no_grad():
                t_out = self.teacher(**inputs, output_hidden_states=True)
            # the objective's values come back detached, for logging; its sum carries the gradient
            layer_loss, values = self.objective(self.model, self.teacher, out, t_out,
                                                inputs["attention_mask"], shares)
            loss = loss + layer_loss
            for term in self.objective.terms:
                logged[f"intermediate_{term.name}"] = term.weight * values[term.name]
        return loss, logged


def intermediate_module(model, teacher, specs: list[dict], device):
    """finetune.intermediate's objective between `model` and the fine-tuned `teacher`'s encoder,
    which is cut at the highest layer a term reads, frozen and moved to `device`."""
    objective = Objective(specs, model.config, teacher.config, INTERMEDIATE, features=("hidden",))
    teacher = models.stop_at(teacher, objective.teacher_depth).to(device).eval()
    teacher.requires_grad_(False)
    teacher.set_attn_implementation(models.attention_kernel_for(device))
    return teacher, objective


def check_intermediate(specs: list[dict], model_dir, teacher_dir) -> None:
    """finetune.intermediate's terms against the two models' config.json, before any weights
    load."""
    check_terms(specs, models.load_config(model_dir), models.load_config(teacher_dir),
                INTERMEDIATE, features=("hidden",))


def dev_accuracy(model, dev: data.Rows, batch_size: int, accelerator) -> float:
    """Accuracy (%) on dev; with several processes each predicts every P-th row."""
    rank, processes = accelerator.process_index, accelerator.num_processes
    mine = dev.select(np.arange(rank, len(dev), processes))
    correct = (predict(model, mine, batch_size, accelerator.device) == mine.column("label")
               ).sum() if len(mine) else 0
    correct = torch.tensor(float(correct), device=accelerator.device)
    if processes > 1:
        correct = accelerator.reduce(correct, reduction="sum")
    return round(100.0 * correct.item() / len(dev), 2)


class Best:
    """The best dev accuracy so far and the weights that reached it (ties: the earlier one)."""

    def __init__(self):
        self.accuracy, self.step, self.weights = -1.0, 0, None

    def state_dict(self) -> dict:
        return {"accuracy": self.accuracy, "step": self.step, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.accuracy, self.step, self.weights = state["accuracy"], state["step"], state["weights"]


def with_teacher_logits(rows, values: np.ndarray) -> data.Rows:
    """The rows (data.Rows or a frame) with the teacher's logits of each row (row order) as
    their `teacher_logits` column."""
    return data.as_rows(rows).assign(teacher_logits=np.asarray(values, dtype=np.float32))


def finetune(model, train, dev, cfg: dict, live, accelerator, seed: int,
             desc: str = "finetune", checkpoints=None, transfer=None, teacher=None) -> dict:
    """Train on `train`. Where the frames carry the teacher's logits (with_teacher_logits), also
    on its soft labels and on the unlabeled `transfer` pairs, weighted by finetune.soft_labels
    and finetune.transfer.weight (the teacher itself is fine-tuned without them). With the
    fine-tuned `teacher`'s encoder, also on finetune.intermediate.objectives. Keeps the
    weights with the best dev accuracy.

    Only dev is read for selection: the test split never enters this function.
    """
    train, dev = data.as_rows(train), data.as_rows(dev)
    soft = "teacher_logits" in train
    weight, temperature = settings.check_soft_labels(cfg) if soft else (0.0, 1.0)
    transfer_weight = settings.check_transfer(cfg)[0] if soft and transfer is not None else 0.0
    if transfer_weight > 0:
        transfer = data.as_rows(transfer)
        train = data.Rows.concat([train.assign(label=train.column("label")),
                                  transfer.assign(label=np.full(len(transfer), UNLABELED))])
    model.base_model.set_attn_implementation(models.attention_kernel_for(accelerator.device))
    objective = None
    if teacher is not None:
        teacher, objective = intermediate_module(model, teacher, settings.check_intermediate(
            cfg)[0], accelerator.device)
    module = FinetuneModule(model, weight, temperature, transfer_weight, teacher, objective)
    plan = plan_for(train, cfg, model.config.pad_token_id, seed, accelerator)
    trainer = Trainer(module, cfg, accelerator, len(plan) * cfg["epochs"])
    best = Best()

    def evaluate_dev(step):
        acc = dev_accuracy(model, dev, cfg["batch_size"] * 2, accelerator)
        live.log_metric("dev/accuracy", acc)
        if acc > best.accuracy:
            best.accuracy, best.step = acc, step
            best.weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    stats = run_training(trainer, plan, cfg, live, desc, seed, checkpoints,
                         on_eval=evaluate_dev, evals_per_epoch=cfg.get("evals_per_epoch", 1),
                         state=[best])
    model.load_state_dict(best.weights)
    return {**stats, "best_dev_accuracy": best.accuracy, "best_step": best.step}
