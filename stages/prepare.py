"""Stage `prepare`: NLI splits and distillation sentences, tokenized with the teacher's tokenizer.

    python stages/prepare.py --teacher data/models/L6 --out data/prepared

Writes train/dev/test/distill.parquet, transfer.parquet (unlabeled pairs in the test languages
for task distillation; empty with data.transfer_corpus=none), token ids as int32, and
summary.json (rows per split and language, label balance, truncation rate).
"""

import argparse

from kdcascade import runtime
from kdcascade.labels import LABELS


def summarise(split_frames: dict, truncated: dict) -> dict:
    summary = {}
    for split, df in split_frames.items():
        rows = df.groupby("language").size().to_dict()
        balance = (df.label.value_counts(normalize=True).reindex(range(len(LABELS)), fill_value=0)
                   .round(4).tolist()) if "label" in df else None
        summary[split] = {"rows": int(len(df)), "rows_per_language": {k: int(v) for k, v in rows.items()},
                          "label_balance": dict(zip(LABELS, balance)) if balance else None,
                          "truncation_rate": round(truncated[split] / max(len(df), 1), 4),
                          "mean_tokens": round(float(df.input_ids.map(len).mean()), 1)
                          if len(df) else 0.0}
    return summary


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    runtime.check_writable(args.out)
    params = runtime.load_params()
    d, seed = params["data"], runtime.seed_of(params)
    from kdcascade import data, models, sources  # torch and transformers: after the params

    positions = models.load_config(args.teacher).max_position_embeddings
    tokenizer = models.load_tokenizer(args.teacher)
    data.check_max_length(d["max_length"], positions, tokenizer.num_special_tokens_to_add(pair=True))
    memo = {}  # each hub language and the translated train set read once for all three
    splits = sources.load_nli(d, seed, memo)
    for split, df in splits.items():
        data.check_nli_frame(df, f"data.source={d['source']}: split {split}")
    sentences = sources.distill_sentences(d, splits["train"], seed, memo)
    transfer = sources.transfer_pairs(d, sentences, seed, memo)

    tokenized, truncated = {}, {}
    for split, df in {**splits, "transfer": transfer}.items():
        tokenized[split], truncated[split] = data.tokenize_pairs(tokenizer, df, d["max_length"])
    distill = data.tokenize_sentences(tokenizer, list(sentences.sentence), d["max_length"])
    distill.insert(0, "language", sentences.language.to_numpy())
    tokenized["distill"] = distill
    truncated["distill"] = int((distill.input_ids.map(len) >= d["max_length"]).sum())

    with runtime.atomic_dir(args.out) as tmp:
        for split, df in tokenized.items():
            data.write_parquet(df, tmp / f"{split}.parquet")
        runtime.write_json(tmp / "summary.json", summarise(tokenized, truncated))
        runtime.write_provenance(tmp, "prepare", {"data": d, "seed": seed})
    for split, df in tokenized.items():
        print(f"{split}: {len(df)} rows, {truncated[split]} truncated")


if __name__ == "__main__":
    runtime.main(run)
