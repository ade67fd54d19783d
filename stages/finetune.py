"""Stages `finetune-teacher` and `finetune@<model>`: fine-tune one model of the cascade on NLI.

    python stages/finetune.py --model L6 --models data/models --data data/prepared \
        --out data/finetuned/L6 --live reports/live/finetune/L6 \
        [--logits-out data/logits/L6] [--checkpoints data/checkpoints/finetune/L6]
    python stages/finetune.py --model L5 ... --teacher-logits data/logits/L6

The checkpoint is chosen on dev (finetune.select_on), never on test. With --logits-out the stage
then writes the fine-tuned model's logits on the splits others learn them on
(kdcascade.teacher_logits). With --teacher-logits (the folder of the model it learns from: the
teacher, or its predecessor with cascade.logits_from=predecessor) and
finetune.soft_labels.weight > 0 a model also learns from those logits (task-specific
distillation); with finetune.transfer.weight > 0 every model (or only the distilled ones,
transfer.models=distilled) also learns them on the unlabeled pairs of
data/prepared/transfer.parquet (data.transfer_corpus).
With finetune.intermediate.objectives and --teacher-model (the fine-tuned teacher's folder) its
layers also learn the teacher's hidden states on every batch (TinyBERT's task distillation). With
finetune.processes > 1 it runs under `accelerate launch`; a killed run resumes from its last
checkpoint.
"""

import argparse
from pathlib import Path

from kdcascade import runtime, schedule, settings
from kdcascade.errors import ConfigError


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--model", "--models", "--data", "--out", "--live"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--teacher-logits", help="the logits this model learns (soft labels, "
                    "transfer): the folder its source model's stage wrote")
    ap.add_argument("--logits-out", help="write this model's logits there, for the models that "
                    "learn them (cascade.learns_from)")
    ap.add_argument("--teacher-model", help="the fine-tuned teacher's folder, for "
                    "finetune.intermediate")
    ap.add_argument("--checkpoints", help="folder for resumable state (finetune.checkpoint_every)")
    args = ap.parse_args()
    runtime.check_writable(args.out, args.live, args.checkpoints, args.logits_out)
    params = runtime.load_params()
    names = schedule.models_of(params)
    cfg, seed = params["finetune"], runtime.seed_of(params)
    if args.model not in names:
        raise ConfigError(f"--model {args.model}: not a model of this cascade ({', '.join(names)})")
    settings.check_training_params(cfg, "finetune")
    weight, _ = settings.check_soft_labels(cfg)
    transfer_weight, transfer_models = settings.check_transfer(cfg)
    distilled = args.model in schedule.steps_of(params)
    transfer_on = bool(args.teacher_logits) and transfer_weight > 0 and settings.takes_transfer(
        transfer_models, distilled)
    soft_on = bool(args.teacher_logits) and (weight > 0 or transfer_on)
    layer_terms, layer_models = settings.check_intermediate(cfg)
    role = names[args.model]["role"]
    source = schedule.learns_from_of(params).get(args.model)  # None for the teacher
    layers_on = bool(layer_terms) and role != "teacher" and settings.takes_transfer(
        layer_models, distilled)
    if layers_on and not args.teacher_model:
        raise ConfigError("finetune.intermediate.objectives: needs --teacher-model, the "
                          "fine-tuned teacher's folder (dvc.yaml passes it)")
    # the params are sound: now the heavy imports (torch, transformers, accelerate)
    from kdcascade import checkpoints, classify, data, launch, models, teacher_logits, training

    training.check_device(cfg, "finetune")
    model_dir = Path(args.models) / args.model
    if layers_on:
        settings.classifier_head_of(args.teacher_model)
        classify.check_intermediate(layer_terms, model_dir, args.teacher_model)
    train = data.read_split(args.data, "train")
    settings.check_rows(len(train), cfg, "finetune", Path(args.data) / "train.parquet")
    dev = classify.selection_rows(data.read_split(args.data, "dev"), cfg["select_on"])
    transfer = data.read_split(args.data, "transfer") if transfer_on else None
    if transfer is not None and not len(transfer):
        raise ConfigError(f"finetune.transfer.weight={transfer_weight}: "
                          f"{Path(args.data) / 'transfer.parquet'} has no pairs; set "
                          "data.transfer_corpus (translated_train or distill)")
    # the frames this model shares its logits on (read once, before training): the teacher and
    # the assistants share theirs whoever learns them, so that cascade.logits_from changes no
    # output; the student and the baseline are nobody's source (their folder names no split)
    to_share = {}
    if args.logits_out and role in ("teacher", "assistant") and (weight > 0 or transfer_weight > 0):
        to_share["train"] = train
        if transfer_weight > 0:
            to_share["transfer"] = data.read_split(args.data, "transfer")

    def with_logits(split, df):
        return classify.with_teacher_logits(df, teacher_logits.read(
            args.teacher_logits, split, Path(args.data) / f"{split}.parquet", len(df),
            source, source is not None and names[source]["role"] == "teacher"))

    if soft_on:
        train = with_logits("train", train)
        transfer = with_logits("transfer", transfer) if transfer is not None else None
    launch.relaunch(cfg)

    accelerator = training.accelerator_for(cfg)
    runtime.seed_everything(seed)
    model = classify.load_classifier(str(model_dir), cfg["pooling"])
    models.freeze(model, cfg["freeze"])
    teacher = classify.load_classifier(args.teacher_model).base_model if layers_on else None
    stage_params = {"finetune": cfg, "seed": seed}
    inputs = [model_dir, Path(args.data) / "train.parquet", Path(args.data) / "dev.parquet"] + (
        [Path(args.data) / "transfer.parquet"] if transfer_on else []) + (
        [args.teacher_logits] if soft_on else []) + ([args.teacher_model] if layers_on else [])
    saved = checkpoints.Checkpoints(args.checkpoints, cfg.get("checkpoint_every", 0),
                                    {**stage_params, "model": args.model}, inputs,
                                    accelerator, args.live)
    resumed = saved.find()
    with training.live_for(accelerator, args.live, resume=resumed > 0) as live:
        stats = classify.finetune(model, train, dev, cfg, live, accelerator, seed,
                                  desc=f"finetune {args.model}", checkpoints=saved,
                                  transfer=transfer, teacher=teacher)
        for key, value in stats.items():
            live.summary[key] = value
        if accelerator.is_main_process:  # inside the live block: a failed save removes the logs
            logits = {split: (Path(args.data) / f"{split}.parquet",
                              classify.logits(model, df, cfg["batch_size"] * 2, accelerator.device))
                      for split, df in to_share.items() if len(df)}
            models.save_model(model, args.out, models.load_tokenizer(str(model_dir)),
                              f"finetune@{args.model}", {**stage_params, **training.run_facts(
                                  accelerator, cfg, resumed)})
            if args.logits_out:
                with runtime.atomic_dir(args.logits_out) as tmp:
                    teacher_logits.write(tmp, args.model, logits)
            print(f"{args.model}: {stats}")
    saved.finish()
    accelerator.end_training()


if __name__ == "__main__":
    runtime.main(run)
