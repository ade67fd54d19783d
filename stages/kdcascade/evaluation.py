"""Evaluation arithmetic: accuracy per language, average, retention, confusion matrix."""

import numpy as np
import pandas as pd

from .labels import LABELS


def accuracy_by_language(languages, labels, preds) -> dict[str, float]:
    """Accuracy (%) per language in first-seen order, plus `avg`: the unweighted mean over
    languages (XNLI's convention), so a language with more rows does not count more."""
    frame = pd.DataFrame({"language": np.asarray(languages), "correct":
                          np.asarray(labels) == np.asarray(preds)})
    per = frame.groupby("language", sort=False).correct.mean() * 100
    out = {lang: round(float(v), 2) for lang, v in per.items()}
    out["avg"] = round(float(per.mean()), 2)
    return out


def retention(accuracy: dict, teacher_accuracy: dict) -> float:
    """Average accuracy as a percentage of the teacher's."""
    return round(100.0 * accuracy["avg"] / teacher_accuracy["avg"], 2)


def confusion(labels, preds) -> list[list[int]]:
    """Rows: gold label, columns: predicted label, in LABELS order."""
    n = len(LABELS)
    counts = np.bincount(np.asarray(labels) * n + np.asarray(preds), minlength=n * n)
    return counts.reshape(n, n).tolist()


def speedups(profile: dict, teacher: dict) -> dict:
    """Speed-up over the teacher: measured (latency ratio per batch size) and the bound that the
    ratio of encoder FLOPs allows (embeddings, head and overheads do not shrink with depth)."""
    out = {"flop_speedup": round(teacher["encoder_gflops"] / profile["encoder_gflops"], 2)}
    for batch, timing in profile.get("latency", {}).items():
        out[f"speedup_{batch}"] = round(teacher["latency"][batch]["ms"] / timing["ms"], 2)
    return out
