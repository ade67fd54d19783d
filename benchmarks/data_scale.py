"""Memory and speed of the data path as the distillation corpus grows, side by side in one run.

    python benchmarks/data_scale.py [--sizes 250000 1000000 4000000] [--text DIR]
                                    [--distill-seconds 40] [--no-distill]

For each size it writes a folder corpus of that many distinct sentences (en, de, fr, es; lines of
--text DIR/<lang>.txt, or generated sentences, repeated with a number so that none is a
duplicate), then runs the real stage scripts on it in a fresh process each, the quickstart's
teacher (all-MiniLM-L6-v2) and params with `data.distill_corpus=<folder>`,
`data.sizes.distill=null`, `cascade.steps=1`:

  prepare             wall time, its own sentences/s (read, tokenized and written) against the
                      tokenizer's batched throughput on the same sentences measured here, and
                      peak resident memory (RSS, and of it anonymous: file pages of a
                      memory-mapped split count in RSS but are shared and can be dropped)
  distill             peak RSS and anonymous memory over its first --distill-seconds (the steps
                      it reached), with distill.processes 1 and 2 (the largest process and the
                      sum over the launcher and its workers)

The quickstart's own corpus (640 generated sentences) is the first row, the reference the
others are compared with. Memory is sampled every 50 ms with psutil.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))
from kdcascade import compose, models, synthetic  # noqa: E402

LANGUAGES = ("en", "de", "fr", "es")
SHARED_TEXT = ROOT.parent / "shared" / "data" / "unlabeled"


def base_sentences(text_dir: Path | None, language: str) -> list[str]:
    if text_dir is not None and (text_dir / f"{language}.txt").is_file():
        lines = (text_dir / f"{language}.txt").read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip()]
    return synthetic.generate_sentences(language, 5000, seed=11)


def write_corpus(folder: Path, size: int, text_dir: Path | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    per_language = size // len(LANGUAGES)
    for lang in LANGUAGES:
        base = base_sentences(text_dir, lang)
        with open(folder / f"{lang}.txt", "w", encoding="utf-8") as f:
            for i in range(per_language):
                f.write(f"{base[i % len(base)]} ({i // len(base)})\n")


def memory(proc: psutil.Process) -> tuple[int, int]:
    """(RSS, anonymous resident memory) of one process, in bytes."""
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        anon = int(re.search(r"RssAnon:\s+(\d+) kB", status).group(1)) * 1024
        return proc.memory_info().rss, anon
    except (psutil.Error, OSError, AttributeError):
        return 0, 0


def watch(cmd: list[str], cwd: Path, seconds: float | None = None) -> dict:
    """Run cmd, sampling the memory of it and its children; stop it after `seconds`."""
    out = open(cwd / "stage.log", "w")
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    peak = {"rss": 0, "anon": 0, "tree_rss": 0, "tree_anon": 0}
    start = time.perf_counter()
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = [root]
        sizes = [memory(p) for p in tree]
        peak["rss"] = max(peak["rss"], *(r for r, _ in sizes))
        peak["anon"] = max(peak["anon"], *(a for _, a in sizes))
        peak["tree_rss"] = max(peak["tree_rss"], sum(r for r, _ in sizes))
        peak["tree_anon"] = max(peak["tree_anon"], sum(a for _, a in sizes))
        if seconds is not None and time.perf_counter() - start > seconds:
            for p in reversed(tree):
                try:
                    p.kill()
                except psutil.Error:
                    pass
            break
        time.sleep(0.05)
    proc.wait()
    out.close()
    peak["wall"] = time.perf_counter() - start
    peak["returncode"] = proc.returncode
    peak["log"] = (cwd / "stage.log").read_text(errors="replace")
    return peak


def tokenizer_throughput(tokenizer, folder: Path, rows: int = 200_000) -> float:
    """Sentences/s of the tokenizer's own batched call, on the corpus's first lines."""
    from kdcascade.data import ROWS_PER_BATCH

    lines = []
    for lang in LANGUAGES:
        with open(folder / f"{lang}.txt", encoding="utf-8") as f:
            for _, line in zip(range(rows // len(LANGUAGES)), f):
                lines.append(line.strip())
    tokenizer(lines[:ROWS_PER_BATCH], truncation=True, max_length=128)  # warm-up
    start = time.perf_counter()
    for i in range(0, len(lines), ROWS_PER_BATCH):
        tokenizer(lines[i:i + ROWS_PER_BATCH], truncation=True, max_length=128,
                  return_attention_mask=False, return_token_type_ids=False)
    return len(lines) / (time.perf_counter() - start)


def workspace(work: Path, teacher: Path, corpus: str, size) -> Path:
    ws = work / f"ws-{size}"
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "models").mkdir(exist_ok=True)
    for name in ("L6", "L3-trunc"):
        link = ws / "models" / name
        if not link.exists():
            link.symlink_to(teacher.parent / name)
    overrides = ["cascade.steps=1", "distill.checkpoint_every=0"]
    if corpus != "generated":
        overrides += [f"data.distill_corpus={corpus}", "data.sizes.distill=null"]
    compose.compose(ws / "params.yaml", overrides)
    return ws


def stage(script: str) -> list[str]:
    return [sys.executable, str(ROOT / "stages" / script)]


def distill_peaks(ws: Path, seconds: float, processes: int) -> dict:
    import yaml

    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["distill"]["processes"] = processes
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.rmtree(ws / "live", ignore_errors=True)
    peak = watch(stage("distill.py") + ["--model", "L3", "--models", "models", "--data",
                                        "prepared", "--live", "live"], ws, seconds)
    steps = re.findall(r"distill L6->L3:[^\r\n]*?(\d+)/\d+ \[", peak["log"])
    peak["steps"] = int(steps[-1]) if steps else 0
    return peak


def mb(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000, 4_000_000])
    ap.add_argument("--text", type=Path, default=SHARED_TEXT if SHARED_TEXT.is_dir() else None,
                    help="a folder of <lang>.txt to take sentences from (default: generated)")
    ap.add_argument("--distill-seconds", type=float, default=40.0)
    ap.add_argument("--no-distill", action="store_true", help="measure prepare only")
    ap.add_argument("--work", type=Path, help="keep the corpora and workspaces here")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="data_scale."))
    teacher = work / "teacher" / "L6"
    if not teacher.exists():
        code = subprocess.call(stage("teacher.py") + ["--out", str(teacher), "--baseline-out",
                                                      str(teacher.parent / "L3-trunc")], cwd=ROOT)
        if code:
            sys.exit(code)
    tokenizer = models.load_tokenizer(str(teacher))
    rows = []
    for size in [None, *args.sizes]:
        corpus = "generated"
        if size is not None:
            corpus = str(work / f"corpus-{size}")
            if not Path(corpus).is_dir():
                write_corpus(Path(corpus), size, args.text)
        ws = workspace(work, teacher, corpus, size or "quickstart")
        shutil.rmtree(ws / "prepared", ignore_errors=True)
        prep = watch(stage("prepare.py") + ["--teacher", "models/L6", "--out", "prepared"], ws)
        if prep["returncode"] != 0:
            sys.exit(f"prepare failed on {size}:\n{prep['log'][-2000:]}")
        rate = float(re.search(r"distill: ([\d,]+) sentences/s", prep["log"]).group(1)
                     .replace(",", ""))
        sentences = int(re.search(r"distill: (\d+) rows", prep["log"]).group(1))
        own = tokenizer_throughput(tokenizer, Path(corpus)) if size else None
        row = {"sentences": sentences, "prepare s": round(prep["wall"], 1),
               "prepare sent/s": f"{rate:,.0f}",
               "tokenizer sent/s": f"{own:,.0f}" if own else "-",
               "ratio": f"{rate / own:.2f}" if own else "-",
               "prepare RSS MB": mb(prep["rss"]), "(anon)": mb(prep["anon"])}
        if not args.no_distill:
            for processes in (1, 2):
                peak = distill_peaks(ws, args.distill_seconds, processes)
                tag = f"distill x{processes}"
                row[f"{tag} steps"] = peak["steps"]
                row[f"{tag} RSS MB"] = mb(peak["rss"])
                row[f"{tag} (anon)"] = mb(peak["anon"])
                if processes > 1:
                    row[f"{tag} all RSS MB"] = mb(peak["tree_rss"])
                    row[f"{tag} all (anon)"] = mb(peak["tree_anon"])
        rows.append(row)
        print(row, flush=True)
        if size is not None and args.work is None:
            shutil.rmtree(ws / "prepared", ignore_errors=True)
    import pandas as pd

    table = pd.DataFrame(rows)
    print(table.T.to_markdown() if len(table.columns) > 8 else table.to_markdown(index=False))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
