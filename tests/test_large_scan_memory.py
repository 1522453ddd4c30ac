"""Peak memory of inference on a large scan streamed from HDF5 (design: < 2 GiB beyond the model).

The scan (10^5 positions, N = 64, uint16 counts: 820 MB on disk, 1.6 GB as float32 amplitudes)
is written chunk by chunk to ``tmp_path``; a subprocess reads it with
:func:`ptycho.data.io.read_scan` (streamed, since it exceeds the threshold), groups, predicts
and stitches it with :func:`ptycho.workflows.inference.reconstruct`, and reports its peak
resident memory (``VmHWM``; ``ru_maxrss`` where there is no ``/proc``) above the level reached
after the imports and the model setup.

The default test uses a network-free stand-in model with the TrainedModel predict API, which
checks the data, grouping and stitching path in seconds; the ``slow`` tests run the real
PyTorch network (about 10 minutes on two CPU cores) and group and stitch 10^6 positions
(gridsize 2, N = 16, stand-in model).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

N = 64
LIMIT_BYTES = 2 * 2**30

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np

    from ptycho.config.config import ModelConfig
    from ptycho.data.io import read_scan
    from ptycho.data.lazy import LazyPatterns
    from ptycho.workflows.inference import reconstruct

    path, kind, n, gridsize = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    class StandInModel:
        '''Network-free TrainedModel: amplitude-weighted phase ramp (NumPy, per chunk).'''
        backend = "stand-in"
        history = {}
        intensity_scale = 1.0

        def __init__(self, n, gridsize):
            self.model_config = ModelConfig(N=n, gridsize=gridsize)
            self.probe = np.ones((n, n), np.complex64)

        def predict(self, inputs, batch_size=256, central_px=None):
            x, offsets = inputs
            factor = np.exp(1j * 0.01 * offsets.sum(axis=(1, 2, 3))).astype(np.complex64)
            return x[..., :1] * factor[:, None, None, None]

        def payload_bytes(self):
            return b""

    if kind == "torch":
        import torch
        from ptycho import physics
        from ptycho.backends.pytorch.model import PtychoPINN
        from ptycho.backends.pytorch.trained_model import TorchTrainedModel
        torch.manual_seed(0)
        torch.set_num_threads(2)
        model = TorchTrainedModel(PtychoPINN(ModelConfig(N=64, n_filters_scale=1),
                                             physics.default_probe(64), 4.0))
        model.predict([np.ones((256, 64, 64, 1), np.float32), np.zeros((256, 1, 2, 1))])
    else:
        model = StandInModel(n, gridsize)

    def rss():
        # peak RSS of this process image: VmHWM (ru_maxrss also counts the RSS of the parent
        # that forked this interpreter, since Linux keeps it across execve)
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    baseline = rss()
    started = time.perf_counter()
    scan = read_scan(path)
    read_s = time.perf_counter() - started
    result = reconstruct(model, scan, batch_size=256, crop_px=min(20, n // 2))
    print(json.dumps({
        "lazy": isinstance(scan.diffraction, LazyPatterns),
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "baseline_bytes": baseline, "peak_bytes": rss(), "growth_bytes": rss() - baseline,
        "read_s": read_s, "total_s": time.perf_counter() - started,
        "object_shape": list(result.stitched.object.shape),
        "covered": float((result.stitched.weight > 0).mean()),
        "patches_kept": result.patches is not None,
    }))
""")


def write_large_scan(path, count: int, seed: int = 0, chunk: int = 4096, n: int = N,
                     dtype=np.uint16):
    """``count`` random count patterns (n x n) on a raster with a 2-pixel step, chunk by chunk."""
    side = int(np.ceil(np.sqrt(count)))
    rows, cols = np.divmod(np.arange(count), side)
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("xcoords", data=40.0 + 2.0 * cols)
        handle.create_dataset("ycoords", data=40.0 + 2.0 * rows)
        handle.create_dataset("probeGuess", data=np.ones((n, n), np.complex64))
        handle.attrs["measurement"] = "intensity"
        patterns = handle.create_dataset("diffraction", shape=(count, n, n), dtype=dtype,
                                         chunks=(64, n, n))
        for lo in range(0, count, chunk):
            hi = min(lo + chunk, count)
            patterns[lo:hi] = rng.integers(0, 40, (hi - lo, n, n), dtype=dtype)
    return path


def run_inference(path, kind: str, timeout: float, n: int = N, gridsize: int = 1,
                  env: dict | None = None) -> dict:
    completed = subprocess.run([sys.executable, "-c", CHILD, str(path), kind, str(n), str(gridsize)],
                               capture_output=True, text=True, timeout=timeout, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _check(report: dict, count: int) -> None:
    print(json.dumps(report))
    assert report["lazy"]
    assert not report["patches_kept"]
    assert report["covered"] > 0.9
    assert report["growth_bytes"] < LIMIT_BYTES, (
        f"inference on {count} positions grew RSS by {report['growth_bytes'] / 2**30:.2f} GiB")


def _checked_report_on_a_large_hdf5_scan(tmp_path, model: str, timeout: float) -> dict:
    """Infer on a written 10^5-position HDF5 scan (deleted afterwards); check the report."""
    count = 100_000
    path = write_large_scan(tmp_path / "large.h5", count)
    try:
        report = run_inference(path, model, timeout=timeout)
    finally:
        path.unlink()
    _check(report, count)
    return report


def test_inference_memory_on_a_large_hdf5_scan(tmp_path):
    report = _checked_report_on_a_large_hdf5_scan(tmp_path, "stand-in", timeout=300)
    # the stream stays far below the 2 GiB budget (float32 amplitudes alone would be 1.6 GB)
    assert report["growth_bytes"] < 2**30


@pytest.mark.slow
def test_inference_memory_on_a_large_hdf5_scan_with_the_real_network(tmp_path):
    _checked_report_on_a_large_hdf5_scan(tmp_path, "torch", timeout=3600)


@pytest.mark.slow
def test_grouping_and_stitching_a_million_positions(tmp_path):
    import os

    from ptycho.data.lazy import LAZY_THRESHOLD_ENV

    count = 1_000_000
    path = write_large_scan(tmp_path / "million.h5", count, n=16, dtype=np.uint8, chunk=65536)
    try:  # 256 MB of patterns: force streaming
        report = run_inference(path, "stand-in", timeout=1800, n=16, gridsize=2,
                               env=dict(os.environ, **{LAZY_THRESHOLD_ENV: "1"}))
    finally:
        path.unlink()
    _check(report, count)
