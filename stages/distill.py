"""Stage `distill@<model>`: one step of the cascade.

    python stages/distill.py --model L5 --from L6 --models data/models --data data/prepared \
        --live reports/live/distill/L5 [--checkpoints data/checkpoints/distill/L5]

The student is initialised from its predecessor (--from, as kdcascade.schedule computes it) by
truncation (distill.init) and distilled from it on the unlabeled sentences, embeddings frozen.
With distill.processes > 1 it runs under `accelerate launch`; a killed run resumes from its last
checkpoint.
"""

import argparse
from pathlib import Path

from kdcascade import runtime, schedule, settings
from kdcascade.errors import ConfigError


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the model this step produces, e.g. L5")
    ap.add_argument("--from", dest="source", help="the model it is distilled from, e.g. L6 "
                    "(checked against the schedule)")
    ap.add_argument("--models", required=True, help="folder holding one folder per model")
    ap.add_argument("--data", required=True)
    ap.add_argument("--live", required=True)
    ap.add_argument("--checkpoints", help="folder for resumable state (distill.checkpoint_every)")
    args = ap.parse_args()
    runtime.check_writable(Path(args.models) / args.model, args.live, args.checkpoints)
    params = runtime.load_params()
    steps = schedule.steps_of(params)
    cfg, seed = params["distill"], runtime.seed_of(params)
    step = steps.get(args.model)
    if step is None:
        raise ConfigError(f"--model {args.model}: not a distilled model of this cascade "
                          f"({', '.join(steps)})")
    if args.source not in (None, step["from"]):
        raise ConfigError(f"--from {args.source}: this cascade distills {args.model} from "
                          f"{step['from']}")
    settings.check_training_params(cfg, "distill")
    # the params are sound: now the heavy imports (torch, transformers, accelerate)
    from kdcascade import checkpoints, data, distillation, launch, models, training
    from kdcascade.objectives import Objective

    training.check_device(cfg, "distill")
    models_dir = Path(args.models)
    teacher_dir = models_dir / step["from"]
    # LightMBERT's `bottom` takes the original teacher's layers; the others take the predecessor's
    init_dir = (models_dir / schedule.model_name(params["teacher"]["layers"])
                if cfg["init"] == "bottom" else teacher_dir)
    # memory-mapped: this process and every launched one share the file's pages
    sentences = data.read_split(args.data, "distill")
    settings.check_rows(len(sentences), cfg, "distill", data.split_path(args.data, "distill"))
    distillation.check_objective(cfg["objectives"], teacher_dir, step["layers"])
    launch.relaunch(cfg)

    accelerator = training.accelerator_for(cfg)
    runtime.seed_everything(seed)
    teacher = models.load_encoder(str(teacher_dir))
    # truncate() copies, so the predecessor itself can be the source: no second load
    source = teacher if init_dir == teacher_dir else models.load_encoder(str(init_dir))
    keep = models.select_layers(cfg["init"], models.num_layers(source), step["layers"])
    student = models.truncate(source, keep)
    objective = Objective(cfg["objectives"], student.config, teacher.config)
    frozen = models.freeze(student, cfg["freeze"])
    before = {n: p.detach().clone() for n, p in student.named_parameters() if n in frozen}

    stage_params = {"step": step, "kept_layers": keep, "distill": cfg, "seed": seed}
    saved = checkpoints.Checkpoints(
        args.checkpoints, cfg.get("checkpoint_every", 0), stage_params,
        [teacher_dir, init_dir, data.split_path(args.data, "distill")], accelerator, args.live)
    resumed = saved.find()
    with training.live_for(accelerator, args.live, resume=resumed > 0) as live:
        stats = distillation.distill(student, teacher, objective, sentences, cfg, live,
                                     accelerator, seed, f"distill {step['from']}->{args.model}",
                                     saved)
        moved = [n for n, p in student.named_parameters() if n in frozen
                 and not (p.detach().cpu() == before[n]).all()]
        if moved:
            raise RuntimeError(f"frozen parameters changed during distillation: {moved[:3]}")
        for key, value in {**stats, "kept_layers": len(keep)}.items():
            live.summary[key] = value
        if accelerator.is_main_process:  # inside the live block: a failed save removes the logs
            student.set_attn_implementation("sdpa")  # the recording kernel exists only here
            models.save_model(student, models_dir / args.model,
                              models.load_tokenizer(str(teacher_dir)), f"distill@{args.model}",
                              {**stage_params, **training.run_facts(accelerator, cfg, resumed)})
            print(f"{step['from']} -> {args.model}: {stats}")
    saved.finish()
    accelerator.end_training()


if __name__ == "__main__":
    runtime.main(run)
