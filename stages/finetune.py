"""Stages `finetune-teacher` and `finetune@<model>`: fine-tune one model of the cascade on NLI.

    python stages/finetune.py --model L5 --models data/models --data data/prepared \
        --out data/finetuned/L5 --live reports/live/finetune/L5

The checkpoint is chosen on dev (finetune.select_on), never on test. With
--teacher-finetuned and finetune.soft_labels.weight > 0 the model also learns from the fine-tuned
teacher's logits (task-specific distillation).
"""

import argparse
from pathlib import Path

from dvclive import Live

from kdcascade import classify, data, models, runtime, schedule, training
from kdcascade.errors import ConfigError


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--model", "--models", "--data", "--out", "--live"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--teacher-finetuned", help="the fine-tuned teacher, for soft labels")
    args = ap.parse_args()
    params = runtime.load_params()
    schedule.check_params(params)
    cfg, seed = params["finetune"], params["seed"]
    if args.model not in params["cascade"]["models"]:
        raise ConfigError(f"--model {args.model}: not in cascade.models "
                          f"({', '.join(params['cascade']['models'])})")
    training.check_training_params(cfg, "finetune")
    weight, _ = classify.check_soft_labels(cfg)
    train = data.read_split(args.data, "train")
    dev = classify.selection_rows(data.read_split(args.data, "dev"), cfg["select_on"])

    runtime.seed_everything(seed)
    model = classify.load_classifier(str(Path(args.models) / args.model), cfg["pooling"])
    models.freeze(model, cfg["freeze"])
    teacher = (classify.load_classifier(args.teacher_finetuned)
               if weight > 0 and args.teacher_finetuned else None)
    device = training.device_of(cfg.get("device", "auto"))
    with Live(args.live, dvcyaml=False, save_dvc_exp=False) as live:
        stats = classify.finetune(model, train, dev, cfg, live, device, seed,
                                  desc=f"finetune {args.model}", teacher=teacher)
        for key, value in stats.items():
            live.summary[key] = value
    with runtime.atomic_dir(args.out) as tmp:
        model.cpu().save_pretrained(tmp)
        models.load_tokenizer(str(Path(args.models) / args.model)).save_pretrained(tmp)
        runtime.write_provenance(tmp, f"finetune@{args.model}", {"finetune": cfg, "seed": seed})
    print(f"{args.model}: {stats}")


if __name__ == "__main__":
    runtime.main(run)
