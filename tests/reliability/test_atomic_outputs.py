"""Atomic outputs: archives, reconstructions and reports are written under a temporary name in
the destination folder and renamed, so a crash or SIGKILL mid-write leaves the previous file
intact and no temporary file is ever taken for an output."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import files_in

from ptycho.archive import ARCHIVE_NAME, read_archive, resolve_archive_path, write_archive
from ptycho.config.config import TrainingConfig
from ptycho_testing import FakeArchiveModel

_KILLED_WRITER = textwrap.dedent("""
    import sys, time, zipfile
    from pathlib import Path
    import numpy as np
    from ptycho.archive import write_archive
    from ptycho.config.config import ModelConfig, TrainingConfig

    class Model:
        backend, payload_name = "pytorch", "weights.pt"
        model_config = ModelConfig(N=64)
        intensity_scale, history = 10.0, {"epoch": [0]}
        probe = np.ones((64, 64), np.complex64)
        def __init__(self, payload):
            self.payload = payload
        def payload_bytes(self):
            return self.payload

    out, flag = Path(sys.argv[1]), Path(sys.argv[2])
    write_archive(out, Model(b"first" * 1000), TrainingConfig(), nphotons=1.0)

    original = zipfile.ZipFile.writestr
    def slow_writestr(self, name, data, *args, **kwargs):
        if name == "weights.pt":  # half the payload, then hang until killed
            self.fp.write(data[: len(data) // 2])
            self.fp.flush()
            flag.touch()
            time.sleep(120)
        return original(self, name, data, *args, **kwargs)
    zipfile.ZipFile.writestr = slow_writestr
    write_archive(out, Model(b"second" * 100000), TrainingConfig(), nphotons=1.0)
""")


def test_sigkill_during_archive_write_keeps_the_previous_archive(tmp_path):
    out = tmp_path / "out"
    flag = tmp_path / "writing"
    process = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(out), str(flag)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the second write never started"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    leftovers = [name for name in files_in(out) if name != ARCHIVE_NAME]
    assert leftovers and all(n.startswith(f".{ARCHIVE_NAME}.") and n.endswith(".tmp")
                             for n in leftovers)  # killed mid-write: the partial file is hidden
    assert resolve_archive_path(out) == out / ARCHIVE_NAME  # never the temporary file
    archive = read_archive(out)
    assert archive.payload == b"first" * 1000  # the previous archive, intact
    with zipfile.ZipFile(out / ARCHIVE_NAME) as intact:
        assert intact.testzip() is None


def test_failed_archive_write_leaves_previous_archive_and_no_temporary(tmp_path, monkeypatch):
    write_archive(tmp_path, FakeArchiveModel(b"first"), TrainingConfig(), nphotons=1.0)
    original = zipfile.ZipFile.writestr

    def failing_writestr(self, name, data, *args, **kwargs):
        if name == "weights.pt":
            raise OSError(28, "No space left on device")
        return original(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    with pytest.raises(OSError):
        write_archive(tmp_path, FakeArchiveModel(b"second"), TrainingConfig(), nphotons=1.0)
    assert files_in(tmp_path) == [ARCHIVE_NAME]
    assert read_archive(tmp_path).payload == b"first"


def test_archive_gets_ordinary_permissions(tmp_path):
    path = write_archive(tmp_path, FakeArchiveModel(b"x"), TrainingConfig(), nphotons=1.0)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600


def test_failed_reconstruction_and_report_writes_keep_previous_files(tmp_path, monkeypatch):
    from ptycho.evaluation import report
    from ptycho.stitching import StitchedObject
    from ptycho.workflows import outputs

    stitched = StitchedObject(object=np.ones((8, 8), np.complex64), x0_px=0.0, y0_px=0.0,
                              weight=np.ones((8, 8)))
    positions = np.zeros((3, 2))
    npz_path = outputs.save_reconstruction_npz(stitched, positions, tmp_path / "reconstruction.npz")
    metrics_path = report.write_metrics_json(tmp_path / "metrics.json", {"psnr": 1.0})
    before = {name: (tmp_path / name).read_bytes() for name in files_in(tmp_path)}

    def broken_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError):
        outputs.save_reconstruction_npz(stitched, positions, npz_path)
    real_write_bytes = Path.write_bytes

    def broken_write_bytes(self, data):
        real_write_bytes(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", broken_write_bytes)
    with pytest.raises(OSError):
        report.write_metrics_json(metrics_path, {"psnr": 2.0})
    monkeypatch.undo()
    assert {name: (tmp_path / name).read_bytes() for name in files_in(tmp_path)} == before
