"""An output the file system refuses is named in one line, exit status 2, before any work and
with nothing left behind; permission bits are not trusted (root may write anywhere they say, yet
/proc and read-only mounts refuse)."""

import errno
import os
import tempfile
from pathlib import Path

import pytest

from kdcascade import runtime
from kdcascade.errors import ConfigError
from test_stage_errors import assert_one_line_error, call_stage, workdir  # noqa: F401 (fixture)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_prepare_into_proc_fails_first_in_one_line(workdir):  # noqa: F811
    """The bad-input battery's case: /proc is a folder the permission bits let root write in."""
    out = call_stage(workdir, "prepare.py", "--teacher", "data/models/L6",
                     "--out", "/proc/forbidden")
    assert_one_line_error(out, "/proc/forbidden: cannot be written: /proc refuses new files")
    assert sorted(p.name for p in workdir.iterdir()) == ["params.yaml"]
    assert not Path("/proc/forbidden").exists()


def test_a_folder_that_refuses_new_files_is_named(tmp_path, monkeypatch):
    """Where the probe cannot be made, whatever os.access says; nothing is left where it can."""
    out = tmp_path / "models"
    out.mkdir()
    runtime.check_writable(out / "L5", out)  # a new folder in it, and it replaced
    assert list(out.iterdir()) == [] and list(tmp_path.iterdir()) == [out]

    def refuse(**kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    assert os.access(out, os.W_OK)
    with pytest.raises(ConfigError, match=f"^{out}/L5: cannot be written: {out} refuses new "
                                          r"files \(Read-only file system\)$"):
        runtime.check_writable(out / "L5")


def test_a_refusal_no_check_could_foresee_is_one_line(capsys):
    """A file system error met mid-run (a full disk, a path gone) names its file, no traceback;
    one without a file name is a bug and keeps its traceback."""
    def run():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "data/finetuned/L3/model.bin")

    with pytest.raises(SystemExit) as done:
        runtime.main(run)
    assert done.value.code == 2
    assert capsys.readouterr().err == ("error: data/finetuned/L3/model.bin: No space left on "
                                       "device\n")
    with pytest.raises(OSError):
        runtime.main(lambda: (_ for _ in ()).throw(OSError("no file named")))
