"""Stage `distill@<model>`: one step of the cascade.

    python stages/distill.py --model L5 --models data/models --data data/prepared \
        --live reports/live/distill/L5

The student (params cascade.schedule[<model>]) is initialised from its predecessor by truncation
(distill.init) and distilled from it on the unlabeled sentences, embeddings frozen.
"""

import argparse
from pathlib import Path

from dvclive import Live

from kdcascade import data, distillation, models, runtime, schedule, training
from kdcascade.errors import ConfigError
from kdcascade.objectives import Objective


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the model this step produces, e.g. L5")
    ap.add_argument("--models", required=True, help="folder holding one folder per model")
    ap.add_argument("--data", required=True)
    ap.add_argument("--live", required=True)
    args = ap.parse_args()
    params = runtime.load_params()
    schedule.check_params(params)
    cfg, seed = params["distill"], params["seed"]
    step = params["cascade"]["schedule"].get(args.model)
    if step is None:
        raise ConfigError(f"--model {args.model}: not in cascade.schedule "
                          f"({', '.join(params['cascade']['schedule'])})")
    training.check_training_params(cfg, "distill")
    models_dir = Path(args.models)
    teacher_dir = models_dir / step["from"]
    # LightMBERT's `bottom` takes the original teacher's layers; the others take the predecessor's
    init_dir = (models_dir / schedule.model_name(params["teacher"]["layers"])
                if cfg["init"] == "bottom" else teacher_dir)
    sentences = data.read_split(args.data, "distill")

    runtime.seed_everything(seed)
    teacher = models.load_encoder(str(teacher_dir))
    # truncate() copies, so the predecessor itself can be the source: no second load
    source = teacher if init_dir == teacher_dir else models.load_encoder(str(init_dir))
    keep = models.select_layers(cfg["init"], models.num_layers(source), step["layers"])
    student = models.truncate(source, keep)
    objective = Objective(cfg["objectives"], student.config, teacher.config)
    frozen = models.freeze(student, cfg["freeze"])
    before = {n: p.detach().clone() for n, p in student.named_parameters() if n in frozen}

    device = training.device_of(cfg.get("device", "auto"))
    batches = data.loader(sentences, cfg["batch_size"], student.config.pad_token_id,
                          shuffle=True, seed=seed)
    with Live(args.live, dvcyaml=False, save_dvc_exp=False) as live:
        stats = distillation.distill(student, teacher, objective, batches, cfg, live, device,
                                     desc=f"distill {step['from']}->{args.model}")
        moved = [n for n, p in student.named_parameters() if n in frozen
                 and not (p.detach().cpu() == before[n]).all()]
        if moved:
            raise RuntimeError(f"frozen parameters changed during distillation: {moved[:3]}")
        for key, value in {**stats, "kept_layers": len(keep)}.items():
            live.summary[key] = value
    student.set_attn_implementation("sdpa")  # the recording kernel exists only in this stage
    with runtime.atomic_dir(models_dir / args.model) as tmp:
        student.cpu().save_pretrained(tmp)
        models.load_tokenizer(str(teacher_dir)).save_pretrained(tmp)
        runtime.write_provenance(tmp, f"distill@{args.model}",
                                 {"step": step, "kept_layers": keep, "distill": cfg, "seed": seed})
    print(f"{step['from']} -> {args.model}: {stats}")


if __name__ == "__main__":
    runtime.main(run)
