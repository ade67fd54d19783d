"""Stage `teacher`: materialise the teacher as a local folder and cut the truncation baseline.

    python stages/teacher.py --out data/models/L6 --baseline-out data/models/L3-trunc

The baseline is the final-depth student taken straight from the teacher and never distilled,
so the report can show what distillation adds over truncation alone.
"""

import argparse

from kdcascade import runtime, schedule
from kdcascade.errors import ConfigError


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--baseline-out", required=True)
    args = ap.parse_args()
    runtime.check_writable(args.out, args.baseline_out)
    params = runtime.load_params()
    schedule.check_params(params)
    t, cascade, distill = params["teacher"], params["cascade"], params["distill"]
    from kdcascade import models  # torch and transformers: once the params are known to be sound

    location = models.teacher_location(t["source"], t["name"])
    keep = models.select_layers(distill["init"], t["layers"], cascade["student_layers"])

    teacher = models.load_encoder(location)
    tokenizer = models.load_tokenizer(location)
    if models.num_layers(teacher) != t["layers"]:
        raise ConfigError(
            f"teacher.layers={t['layers']}: the teacher at {location} has "
            f"{models.num_layers(teacher)} layers; set teacher.layers to match")
    baseline = models.truncate(teacher, keep)
    for model, out, stage_params in ((teacher, args.out, {"teacher": t}),
                                     (baseline, args.baseline_out,
                                      {"teacher": t, "kept_layers": keep})):
        models.save_model(model, out, tokenizer, "teacher", stage_params)
    print(f"teacher {location}: {t['layers']} layers -> {args.out}; "
          f"truncated baseline (layers {keep}) -> {args.baseline_out}")


if __name__ == "__main__":
    runtime.main(run)
