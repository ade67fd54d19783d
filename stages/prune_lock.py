"""Stage `prune-lock`: drop dvc.lock entries of stages that dvc.yaml no longer defines.

    python stages/prune_lock.py            # remove them (the pipeline runs this)
    python stages/prune_lock.py --check    # exit 1, naming them, if there are any

DVC never removes a lock entry, so a shorter cascade (`dvc exp run -S cascade.steps=1` after
steps=3) would leave distill@L5, finetune@L5 ... in dvc.lock, describing stages that no longer
exist. The pipeline runs this stage whenever the stage list can have changed (dvc.yaml, the
cascade params); DVC then writes this stage's own entry into the pruned file.
"""

import argparse
import sys
from pathlib import Path

from kdcascade import lockfile, runtime


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report stale entries")
    ap.add_argument("--root", default=".", help="the repository root")
    args = ap.parse_args()
    root = Path(args.root)
    if args.check:
        gone = lockfile.stale_entries(root)
        if gone:
            print(f"dvc.lock: entries of stages not in dvc.yaml: {', '.join(gone)}; "
                  "remove them with `python stages/prune_lock.py`", file=sys.stderr)
            sys.exit(1)
        return
    gone = lockfile.prune(root)
    print(f"dvc.lock: removed {', '.join(gone)}" if gone else "dvc.lock: nothing stale")


if __name__ == "__main__":
    runtime.main(run)
