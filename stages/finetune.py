"""Stages finetune-teacher, finetune@<model>, finetune-plain@<model>: fine-tune a model on NLI.

    python stages/finetune.py --model L6 --models data/models --data data/prepared \
        --out data/finetuned/L6 --live reports/live/finetune/L6 \
        [--logits-out data/logits/L6] [--checkpoints data/checkpoints/finetune/L6]
    python stages/finetune.py --model L5 ... --teacher-logits data/logits/L6 \
        --transfer true --intermediate false
    python stages/finetune.py --model L3-plain --encoder data/models/L3-trunc --data ...

The checkpoint is chosen on dev (finetune.select_on), never on test. With --logits-out the stage
then writes the fine-tuned model's logits on the splits others learn them on
(kdcascade.teacher_logits). With --teacher-logits (the folder of the model it learns from: the
teacher, or its predecessor with cascade.logits_from=predecessor) and
finetune.soft_labels.weight > 0 a model also learns from those logits (task-specific
distillation); with finetune.transfer.weight > 0 and --transfer true (every model, or only the
distilled ones with transfer.models=distilled: cascade.learns_from says which) it also learns them
on the unlabeled pairs of data/prepared/transfer.arrow (data.transfer_corpus).
The plain baseline (cascade.plain_baseline) learns the labels alone: no logits, no transfer
pairs, no intermediate terms, whatever finetune.soft_labels/.transfer/.intermediate say.
With finetune.intermediate.objectives, --intermediate true and --teacher-model (the fine-tuned
teacher's folder) its layers also learn the teacher's hidden states on every batch (TinyBERT's
task distillation). With finetune.processes > 1 it runs under `accelerate launch`; a killed run
resumes from its last checkpoint.
"""

import argparse
from pathlib import Path

from kdcascade import runtime, schedule, settings
from kdcascade.errors import ConfigError


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--model", "--data", "--out", "--live"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--models", help="folder holding each model's encoder: <models>/<model>")
    ap.add_argument("--encoder", help="the encoder's folder, instead of <models>/<model> (the "
                    "plain baseline starts from the truncated baseline's)")
    ap.add_argument("--teacher-logits", help="the logits this model learns (soft labels, "
                    "transfer): the folder its source model's stage wrote")
    ap.add_argument("--logits-out", help="write this model's logits there, for the models that "
                    "learn them (cascade.learns_from)")
    ap.add_argument("--teacher-model", help="the fine-tuned teacher's folder, for "
                    "finetune.intermediate")
    ap.add_argument("--checkpoints", help="folder for resumable state (finetune.checkpoint_every)")
    # per model, from cascade.learns_from (dvc.yaml passes them, so that a param that changes
    # what one model learns reruns that model's stage alone); default: params.yaml's record
    for flag, section in (("--transfer", "transfer"), ("--intermediate", "intermediate")):
        ap.add_argument(flag, choices=("true", "false"), help=f"whether finetune.{section} "
                        "applies to this model (its `models`: all, or the distilled ones)")
    args = ap.parse_args()
    if not (args.models or args.encoder):
        raise ConfigError("give --models (the folder of every model's encoder) or --encoder")
    runtime.check_writable(args.out, args.live, args.checkpoints, args.logits_out)
    params = runtime.load_params()
    names = schedule.models_of(params)
    cfg, seed = params["finetune"], runtime.seed_of(params)
    if args.model not in names:
        raise ConfigError(f"--model {args.model}: not a model of this cascade ({', '.join(names)})")
    settings.check_training_params(cfg, "finetune")
    weight, _ = settings.check_soft_labels(cfg)
    transfer_weight, _ = settings.check_transfer(cfg)
    layer_terms, _ = settings.check_intermediate(cfg)
    role = names[args.model]["role"]
    record = schedule.fine_tuning_of(params).get(args.model, {})  # {}: teacher, plain baseline
    if role in schedule.LABELS_ONLY and (args.teacher_logits or "true" in (args.transfer,
                                                                          args.intermediate)):
        what = "the plain baseline" if role == "plain" else "the teacher"
        raise ConfigError(f"--model {args.model} is {what}: it learns the labels alone; drop "
                          "--teacher-logits, --transfer true and --intermediate true")
    source = record.get("logits")  # None for the teacher and the plain baseline
    chosen = {key: record.get(key, False) if flag is None else flag == "true"
              for key, flag in (("transfer", args.transfer), ("intermediate", args.intermediate))}
    learns = settings.teacher_signals(cfg, bool(args.teacher_logits), **chosen)
    transfer_on, layers_on = learns["transfer"], learns["intermediate"]
    soft_on = learns["soft_labels"] or transfer_on  # both read the teacher's logits
    if layers_on and not args.teacher_model:
        raise ConfigError("finetune.intermediate.objectives: needs --teacher-model, the "
                          "fine-tuned teacher's folder (dvc.yaml passes it)")
    # the params are sound: now the heavy imports (torch, transformers, accelerate)
    from kdcascade import checkpoints, classify, data, launch, models, teacher_logits, training

    training.check_device(cfg, "finetune")
    model_dir = Path(args.encoder) if args.encoder else Path(args.models) / args.model
    if layers_on:
        settings.classifier_head_of(args.teacher_model)
        classify.check_intermediate(layer_terms, model_dir, args.teacher_model)
    train = data.read_split(args.data, "train")
    settings.check_rows(len(train), cfg, "finetune", data.split_path(args.data, "train"))
    dev = classify.selection_rows(data.read_split(args.data, "dev"), cfg["select_on"])
    transfer = data.read_split(args.data, "transfer") if transfer_on else None
    if transfer is not None and not len(transfer):
        raise ConfigError(f"finetune.transfer.weight={transfer_weight}: "
                          f"{data.split_path(args.data, 'transfer')} has no pairs; set "
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
            args.teacher_logits, split, data.split_path(args.data, split), len(df),
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
    inputs = [model_dir, data.split_path(args.data, "train"), data.split_path(args.data, "dev")
              ] + ([data.split_path(args.data, "transfer")] if transfer_on else []) + (
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
            logits = {split: (data.split_path(args.data, split),
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
