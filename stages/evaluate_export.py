"""Stage `evaluate-export`: every exported variant against its PyTorch model, on the test split.

    python stages/evaluate_export.py --exported data/exported --finetuned data/finetuned \
        --data data/prepared --out reports/export

For every model of export.models: PyTorch fp32, ONNX fp32 and the quantised ONNX variant, all on
the CPU with the same number of threads: accuracy per language, agreement of predictions with
PyTorch, latency at evaluate.timing_batches and evaluate.timing_length (after a warm-up round,
the median of evaluate.timing_repeats rounds or more, until the timed rounds took 2 s, every
model and variant taking turns in each round, so load from other jobs falls on all of them) and
size on disk with and without the word-embedding matrix.
Writes metrics.json, which the report reads (not a DVC metric).
"""

import argparse
from pathlib import Path

from kdcascade import runtime, schedule, settings

MIN_TIMED_SECONDS = 2.0


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--exported", "--finetuned", "--data", "--out"):
        ap.add_argument(flag, required=True)
    args = ap.parse_args()
    runtime.check_writable(args.out)
    params = runtime.load_params()
    settings.check_export_params(params["export"])
    cascade = schedule.models_of(params)
    items = {item: schedule.model_named(item, cascade, "export.models")
             for item in params["export"]["models"]}
    heads = {item: settings.classifier_head_of(Path(args.finetuned) / name)
             for item, name in items.items()}
    timing = params["evaluate"]
    # the params are sound: now the heavy imports (torch, onnxruntime)
    import torch

    from kdcascade import classify, data, efficiency, exporting
    from kdcascade.errors import ConfigError

    test = data.read_split(args.data, "test")
    results, runs = {}, {}
    for item, name in items.items():
        exported, finetuned = Path(args.exported) / item, Path(args.finetuned) / name
        manifest = exporting.read_manifest(exported)
        if manifest["model"] != name:
            raise ConfigError(f"{exported}: holds {manifest['model']}, but this cascade's {item} "
                              f"is {name}; run export@{item}")
        model = classify.load_classifier(str(finetuned), heads[item])
        variants = exporting.engines(model, exported, manifest)
        logits = {v: exporting.logits_of(e, test, timing["batch_size"], model.config.pad_token_id)
                  for v, e in variants.items()}
        measured = exporting.agreement(logits, test.column("language"), test.column("label"))
        for variant, size in exporting.sizes(variants, model, finetuned, exported,
                                             manifest).items():
            measured[variant].update(size)
        results[item] = {"model": name, "role": cascade[name]["role"], "variants": measured,
                         "vocabulary": manifest.get("vocabulary")}
        runs[item] = (variants, model.config.vocab_size, manifest["inputs"])

    if timing["timing_repeats"] > 0:
        for batch in timing["timing_batches"]:
            calls = {(item, variant): exporting.runner(engine, efficiency.random_inputs(
                         vocab, batch, timing["timing_length"], names))
                     for item, (variants, vocab, names) in runs.items()
                     for variant, engine in variants.items()}
            # one warm-up round (both engines are warm after one call); at least 2 s of timed
            # rounds, so batch 1 (tens of ms a call) gets dozens of samples, not 3
            times = efficiency.take_turns(calls, batch, timing["timing_repeats"], warmup=1,
                                          min_seconds=MIN_TIMED_SECONDS)
            for (item, variant), t in times.items():
                measured = results[item]["variants"]
                measured[variant].setdefault("latency", {})[f"batch{batch}"] = t
                measured[variant][f"speedup_batch{batch}"] = round(
                    times[(item, exporting.PYTORCH)]["ms"] / t["ms"], 2)
    runtime.write_json(Path(args.out) / "metrics.json",
                       {"threads": torch.get_num_threads(), "models": results})
    for item, r in results.items():
        for variant, m in r["variants"].items():
            speed = " ".join(f"{b} {t['ms']:.1f} ms ({m[f'speedup_{b}']:.2f}x)"
                             for b, t in m.get("latency", {}).items())
            print(f"{item} ({r['model']}) {variant:>11}: avg {m['accuracy']['avg']:.2f}%, agrees "
                  f"{m['agreement']:.2f}%, {m['bytes_on_disk'] / 1e6:.1f} MB "
                  f"({m['bytes_without_word_embeddings'] / 1e6:.1f} without word embeddings) "
                  f"{speed}")


if __name__ == "__main__":
    runtime.main(run)
