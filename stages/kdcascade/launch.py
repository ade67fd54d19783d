"""Running a training stage on several processes: it re-runs itself under `accelerate launch`.

The stage script checks its params and inputs first (so bad input fails once, before any process
starts), then calls `relaunch`. With `processes: 1`, or inside a launch already (WORLD_SIZE set,
e.g. a multi-machine `accelerate launch` started by hand), the stage simply goes on.
"""

import os
import socket
import subprocess
import sys

from .training import device_of


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(processes: int, argv: list[str]) -> list[str]:
    # --multi_gpu selects accelerate's torchrun launcher; on CPU the Accelerator is created with
    # cpu=True and joins a gloo process group instead of NCCL
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
            "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), *argv]


def relaunch(cfg: dict) -> None:
    """With cfg['processes'] > 1 and no launch around us, run this script again in that many
    processes and exit with their status."""
    processes = cfg.get("processes", 1)
    if processes == 1 or "WORLD_SIZE" in os.environ:
        return
    env = dict(os.environ)
    if device_of(cfg.get("device", "auto")).type == "cpu":
        # torchrun would give each process one thread; share the cores instead
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    sys.stdout.flush()
    sys.exit(subprocess.call(launch_command(processes, [sys.argv[0], *sys.argv[1:]]), env=env))

