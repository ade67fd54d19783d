"""Stage `evaluate`: zero-shot accuracy of every fine-tuned model on the test split.

    python stages/evaluate.py --finetuned data/finetuned --data data/prepared --out reports/eval

Models come from params (teacher.layers and cascade), never from listing folders, so leftovers
of a longer cascade are not reported. Writes metrics.json (accuracy per language, average,
retention), efficiency.json (parameters, size, encoder FLOPs, measured latency and the speed-ups
over the teacher, measured and FLOP-bound) and confusion.json: outputs the report reads, not DVC
metrics (`dvc exp show` compares the report's summary.json).
"""

import argparse
from pathlib import Path

from kdcascade import runtime, schedule
from kdcascade.errors import ConfigError


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--finetuned", "--data", "--out"):
        ap.add_argument(flag, required=True)
    args = ap.parse_args()
    runtime.check_writable(args.out)
    params = runtime.load_params()
    cascade = schedule.models_of(params)
    cfg = params["evaluate"]
    from kdcascade import classify, data, efficiency, evaluation, training  # heavy: after params

    test = data.read_split(args.data, "test")
    languages, labels = test.column("language"), test.column("label")
    missing = [m for m in cascade if not (Path(args.finetuned) / m).is_dir()]
    if missing:
        raise ConfigError(f"{args.finetuned}: no fine-tuned model for {missing}; "
                          "run the finetune stages first")

    device = training.device_of(cfg.get("device", "auto"))
    metrics, speed, confusions = {}, {}, {}
    for name, info in cascade.items():
        folder = Path(args.finetuned) / name
        model = classify.load_classifier(str(folder))
        preds = classify.predict(model, test, cfg["batch_size"], device)
        acc = evaluation.accuracy_by_language(languages, labels, preds)
        teacher = next(iter(metrics.values()), {"accuracy": acc})  # the teacher comes first
        metrics[name] = {"role": info["role"], "layers": info["layers"], "accuracy": acc,
                         "retention": evaluation.retention(acc, teacher["accuracy"])}
        speed[name] = efficiency.profile(model, folder, cfg, device)
        speed[name].update(evaluation.speedups(speed[name], next(iter(speed.values()))))
        confusions[name] = evaluation.confusion(labels, preds)
        print(f"{name:>9} ({info['role']}): avg {acc['avg']:.2f}%  " +
              " ".join(f"{k} {v:.1f}" for k, v in acc.items() if k != "avg"))
    runtime.write_json(Path(args.out) / "metrics.json", metrics)
    runtime.write_json(Path(args.out) / "efficiency.json", speed)
    runtime.write_json(Path(args.out) / "confusion.json", confusions)


if __name__ == "__main__":
    runtime.main(run)
