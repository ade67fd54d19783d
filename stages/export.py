"""Stage `export@<model>`: a fine-tuned classifier as ONNX, fp32 and dynamically quantised.

    python stages/export.py --model student --finetuned data/finetuned --out data/exported/student

--model is a model name (L3) or a role (student, truncated, teacher), as export.models lists
them. Writes model.onnx (encoder + head, dynamic batch and length, checked against PyTorch's
logits), model.<export.quantization>.onnx (ONNX Runtime's dynamic quantisation, a scale per
output channel with export.per_channel; none: no quantised file), the tokenizer
(tokenizer.json truncates pairs to data.max_length and pads, as the pipeline did), export.json
(labels, inputs, files) and provenance.json: a folder that onnxruntime and tokenizers alone can
serve (see the README). With export.vocabulary: seen, the word embeddings keep only the tokens
of the prepared splits in --data other than test (an id table maps every other token to the
unknown token; the tokenizer is unchanged). The evaluate-export stage measures it.
"""

import argparse
from pathlib import Path

from kdcascade import runtime, schedule, settings
from kdcascade.errors import ConfigError


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a model name (L3) or role (student)")
    ap.add_argument("--finetuned", required=True, help="folder holding one folder per model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", help="the prepared splits (export.vocabulary: seen)")
    args = ap.parse_args()
    runtime.check_writable(args.out)
    params = runtime.load_params()
    cfg = params["export"]
    mode = settings.check_export_params(cfg)
    cascade = schedule.models_of(params)
    name = schedule.model_named(args.model, cascade, "--model (an item of export.models)")
    folder = Path(args.finetuned) / name
    pooling = settings.classifier_head_of(folder)
    seen = None
    if cfg.get("vocabulary", "full") == "seen":
        if not args.data:
            raise ConfigError("export.vocabulary=seen: give --data, the prepared splits")
        seen = settings.seen_splits(args.data)
    # the params and the folder are sound: now the heavy imports (torch, onnx, onnxruntime)
    from kdcascade import classify, exporting, models

    model = classify.load_classifier(str(folder), pooling)
    tokenizer = models.load_tokenizer(str(folder))
    keep = exporting.seen_token_ids(seen) if seen else None
    with runtime.atomic_dir(args.out) as tmp:
        manifest = exporting.export(
            model, tokenizer, tmp, mode, cfg["per_channel"], params["data"]["max_length"],
            about={"model": name, "role": cascade[name]["role"],
                   "layers": cascade[name]["layers"], "pooling": pooling}, keep_tokens=keep)
        runtime.write_provenance(tmp, f"export@{args.model}", {
            "export": cfg, "model": name, "max_length": params["data"]["max_length"]})
    trimmed = manifest["vocabulary"]
    print(f"{args.model} ({name}): {', '.join(manifest['variants'])} in {args.out}; "
          f"fp32 logits within {manifest['max_logit_difference']:.1e} of PyTorch's" +
          (f"; {trimmed['tokens']} of {trimmed['of']} tokens kept" if trimmed else ""))


if __name__ == "__main__":
    runtime.main(run)
