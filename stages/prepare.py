"""Stage `prepare`: NLI splits and distillation sentences, tokenized with the teacher's tokenizer.

    python stages/prepare.py --teacher data/models/L6 --out data/prepared

Writes train/dev/test/distill/transfer.arrow (kdcascade.data: Arrow files that later stages read
memory-mapped; transfer holds unlabeled pairs in the test languages for task distillation, none
with data.transfer_corpus=none) and summary.json (rows per split and language, label balance,
truncation rate). The distillation corpus streams from its source through the tokenizer into its
file a batch at a time (kdcascade.corpora): memory does not grow with the corpus.
"""

import argparse
import time

from kdcascade import runtime


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    runtime.check_writable(args.out)
    params = runtime.load_params()
    d, seed = params["data"], runtime.seed_of(params)
    from kdcascade import data, models, sources  # tokenizers and pandas: after the params

    positions = models.load_config(args.teacher).max_position_embeddings
    tokenizer = models.load_tokenizer(args.teacher)
    data.check_fast(tokenizer)
    data.check_max_length(d["max_length"], positions, tokenizer.num_special_tokens_to_add(pair=True))
    memo = {}  # each hub language read once for the splits and both corpora
    splits = sources.load_nli(d, seed, memo)
    for split, df in splits.items():
        data.check_nli_frame(df, f"data.source={d['source']}: split {split}")
    corpus = sources.distill_corpus(d, splits["train"], seed, memo)  # checked, not yet read

    summary = {}
    with runtime.atomic_dir(args.out) as tmp:
        for split, df in splits.items():
            summary[split] = data.write_pairs(data.split_path(tmp, split), df, tokenizer,
                                              d["max_length"])
        del splits
        start = time.perf_counter()
        summary["distill"] = data.write_sentences(data.split_path(tmp, "distill"),
                                                  corpus.sentences(), tokenizer, d["max_length"])
        seconds = time.perf_counter() - start
        transfer = sources.transfer_pairs(d, data.split_path(tmp, "distill"), seed, memo)
        summary["transfer"] = data.write_pairs(data.split_path(tmp, "transfer"), transfer,
                                               tokenizer, d["max_length"])
        runtime.write_json(tmp / "summary.json", summary)
        runtime.write_provenance(tmp, "prepare", {"data": d, "seed": seed})
    for split, s in summary.items():
        print(f"{split}: {s['rows']} rows, {s['truncation_rate']:.2%} truncated")
    print(f"distill: {summary['distill']['rows'] / max(seconds, 1e-9):,.0f} sentences/s "
          f"read, tokenized and written")


if __name__ == "__main__":
    runtime.main(run)
