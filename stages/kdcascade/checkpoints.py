"""Checkpoints that let a killed stage resume instead of starting over.

A stage's checkpoints live in their own folder, outside its DVC outputs (DVC deletes those before
it reruns a stage). Each checkpoint is written whole, then renamed into place:

    <folder>/step-00000120/   accelerate's save_state: model, optimizer, scheduler, gradient
                              scaler, every process's RNG, registered objects
                  live/       the stage's dvclive folder as it was at that step
                  meta.json   the step and the fingerprint of what produced it

A checkpoint is resumed only if its fingerprint (the stage's params, the contents of its input
files and of the code) equals the current one; otherwise it is deleted and the stage starts
over. The folder is removed once the stage's outputs are written, or when the run diverges.
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

PREFIX = "step-"


def _file_digest(path: Path, h) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def digest_paths(paths) -> str:
    """One hash over the names and contents of files, and of every file under folders."""
    h = hashlib.sha256()
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + b"\0")
            _file_digest(f, h)
    return h.hexdigest()


def make_fingerprint(params: dict, inputs: list) -> dict:
    """What a checkpoint must have been made from to be resumed: params, inputs, code."""
    package = Path(__file__).parent
    script = Path(sys.argv[0])  # the stage script; not a file under `python -c` or a test runner
    code = [*([script.resolve()] if script.is_file() else []), *sorted(package.glob("*.py"))]
    return {"params": hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
            .hexdigest(),
            "inputs": digest_paths(inputs), "code": digest_paths(code)}


class Checkpoints:
    """Save every `every` optimizer steps into `folder`; resume from the latest matching one.

    `params` and `inputs` (files or folders) are what the fingerprint covers, with the code.
    Without a folder nothing is saved or resumed.
    """

    def __init__(self, folder, every: int, params: dict, inputs: list, accelerator, live_dir):
        self.folder = Path(folder) if folder else None
        self.every = every if folder else 0
        self.params, self.inputs = params, list(dict.fromkeys(map(str, inputs)))
        self.accelerator, self.live_dir = accelerator, Path(live_dir)
        self.found: Path | None = None
        self._fingerprint = None

    @property
    def fingerprint(self) -> dict:
        if self._fingerprint is None:  # hashing model folders takes a moment: only when needed
            self._fingerprint = make_fingerprint(self.params, self.inputs)
        return self._fingerprint

    def _latest(self) -> Path | None:
        done = sorted(p for p in self.folder.glob(f"{PREFIX}*") if (p / "meta.json").is_file())
        return done[-1] if done else None

    def find(self) -> int:
        """The step to resume from (0: none). Call before dvclive opens the live folder: the
        folder is put back as it was at the checkpoint, so the logs continue without a gap."""
        acc = self.accelerator
        found = [None]
        if acc.is_main_process and self.folder is not None:
            latest = self._latest()
            if latest is not None:
                meta = json.loads((latest / "meta.json").read_text())
                differ = [k for k in ("params", "inputs", "code")
                          if meta["fingerprint"].get(k) != self.fingerprint[k]]
                if differ:
                    print(f"{self.folder}: the checkpoint at step {meta['step']} was made from "
                          f"other {', '.join(differ)}; starting over", file=sys.stderr)
                    shutil.rmtree(self.folder)
                else:
                    found = [(str(latest), meta["step"])]
                    if self.live_dir.exists():
                        shutil.rmtree(self.live_dir)
                    if (latest / "live").is_dir():
                        shutil.copytree(latest / "live", self.live_dir)
        if acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(found)
        if found[0] is None:
            return 0
        self.found = Path(found[0][0])
        acc.print(f"resuming from {self.found} (step {found[0][1]})")
        return found[0][1]

    def restore(self) -> None:
        """Load the found checkpoint into everything registered with the accelerator."""
        if self.found is not None:
            self.accelerator.load_state(str(self.found))

    def maybe_save(self, step: int, total: int) -> None:
        if not self.every or step % self.every or step >= total:
            return
        acc = self.accelerator
        final = self.folder / f"{PREFIX}{step:08d}"
        scratch = self.folder / f".{final.name}.partial"
        if acc.is_main_process and scratch.exists():
            shutil.rmtree(scratch)
        acc.wait_for_everyone()
        acc.save_state(str(scratch))
        acc.wait_for_everyone()
        if acc.is_main_process:
            if self.live_dir.is_dir():
                shutil.copytree(self.live_dir, scratch / "live")
            (scratch / "meta.json").write_text(
                json.dumps({"step": step, "fingerprint": self.fingerprint}, indent=2))
            if final.exists():
                shutil.rmtree(final)
            scratch.rename(final)
            for old in self.folder.glob(f"{PREFIX}*"):
                if old != final:
                    shutil.rmtree(old)
        acc.wait_for_everyone()

    def finish(self) -> None:
        """Remove the checkpoints: the stage's outputs are written, or its run diverged (a
        diverged run's state is not worth resuming)."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process and self.folder and self.folder.exists():
            shutil.rmtree(self.folder)
