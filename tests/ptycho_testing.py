"""Helpers shared by the test modules (imported as ``ptycho_testing``; ``tests/`` is on
``sys.path`` because ``tests/conftest.py`` lives there). Not a conftest: a second conftest.py
elsewhere in the tree would shadow ``import conftest``."""

from __future__ import annotations

import numpy as np


def smooth_object(rng: np.random.Generator, size: int = 96, sigma: float = 2.5,
                  phase_span: float = 1.0) -> np.ndarray:
    """Smooth random complex object (size, size): amplitude 0.3..0.9, phase of std ``phase_span``."""
    from scipy import ndimage

    amplitude = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma, mode="wrap")
    amplitude = 0.6 + 0.15 * amplitude / amplitude.std()
    phase = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma, mode="wrap")
    phase = phase_span * phase / phase.std()
    return np.clip(amplitude, 0.3, 0.9) * np.exp(1j * phase)


def make_test_scan(n_side: int = 10, step_px: float = 6.0, N: int = 64, nphotons: float = 1e5,
                   seed: int = 0, subpixel: bool = False, second_mode_power: float | None = None):
    """A small simulated scan: smooth random complex object, default probe, Poisson counts.

    Returns a :class:`ptycho.data.scan.Scan` with ``n_side**2`` raster positions (optionally
    with sub-pixel jitter) and the ground truth in ``object_guess``. With
    ``second_mode_power`` the beam is 2 incoherent modes made from the default probe
    (:func:`ptycho.data.simulation.mixed_state_probe`, seed 0), kept in ``probe_modes``.
    """
    from scipy.ndimage import gaussian_filter

    from ptycho import physics
    from ptycho.data.scan import Scan

    generator = np.random.default_rng(seed)
    margin = N // 2 + 4
    size = int(2 * margin + step_px * (n_side - 1)) + 1
    amplitude = gaussian_filter(generator.random((size, size)), 3)
    amplitude = 0.5 + 0.5 * (amplitude - amplitude.min()) / np.ptp(amplitude)
    phase = gaussian_filter(generator.standard_normal((size, size)), 4)
    phase = 1.2 * phase / np.abs(phase).max()
    obj = amplitude * np.exp(1j * phase)
    grid = margin + step_px * np.arange(n_side)
    x, y = (a.ravel() for a in np.meshgrid(grid, grid))
    if subpixel:
        x = x + generator.uniform(-0.5, 0.5, x.shape)
        y = y + generator.uniform(-0.5, 0.5, y.shape)
    probe = physics.default_probe(N)
    modes = None
    if second_mode_power is not None:
        from ptycho.data.simulation import mixed_state_probe

        modes = mixed_state_probe(probe, second_mode_power).astype(np.complex64)
        probe = modes[0]
    intensity = physics.simulate_amplitude(obj, probe if modes is None else modes, x, y) ** 2
    intensity *= nphotons / intensity.sum(axis=(1, 2)).mean()
    counts = generator.poisson(intensity)
    return Scan(diffraction=np.sqrt(counts).astype(np.float32), xcoords=x, ycoords=y,
                probe=probe.astype(np.complex64), probe_modes=modes,
                object_guess=obj.astype(np.complex64))


def run_cli(*args, cwd=None, timeout=600):
    """Run ``ptychopinn ARGS`` in a fresh interpreter; assert success and return the result."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ptycho.cli.main", *map(str, args)],
                            capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def check_central_only_predict(model, scan, gridsize: int) -> None:
    """``predict(central_px=20)`` equals the full predict in the central N/2 box (N=64 model).

    With gridsize 1 the border branch is skipped (zeros outside the box); with gridsize 2 the
    object_big merge needs whole patches, so nothing changes. ``central_px`` > N/2 is ignored.
    """
    from ptycho.data.grouping import GroupedData

    grouped = GroupedData.from_scan(scan, gridsize)
    inputs = [grouped.X(slice(0, 8)) * np.float32(10.0), grouped.coords(slice(0, 8))["relative"]]
    full = model.predict(inputs)
    central = model.predict(inputs, central_px=20)
    box = slice(16, 48)  # the central N/2 box
    np.testing.assert_allclose(central[:, box, box], full[:, box, box], rtol=0, atol=1e-6)
    if gridsize == 1:
        assert np.abs(full[:, :16]).max() > 0 and np.abs(central[:, :16]).max() == 0
    else:
        np.testing.assert_array_equal(central, full)
    np.testing.assert_array_equal(model.predict(inputs, central_px=33), full)


class FakeArchiveModel:
    """Just enough of a TrainedModel for ``write_archive``: the weights payload is given bytes."""

    def __init__(self, payload: bytes, backend: str = "pytorch", **model_config):
        from ptycho.config.config import ModelConfig

        self.backend = backend
        self.payload_name = "weights.pt" if backend == "pytorch" else "model.weights.h5"
        self.model_config = ModelConfig(**{"N": 64, **model_config})
        self.intensity_scale = 10.0
        self.history = {"epoch": [0], "train_loss": [1.0]}
        self.probe = np.ones((64, 64), np.complex64)
        self._payload = payload

    def payload_bytes(self) -> bytes:
        return self._payload


def add_detector_faults(scan, dead_fraction: float = 0.03, n_hot: int = 6,
                        saturation_quantile: float | None = 0.999, seed: int = 0):
    """A copy of ``scan`` with a faulty detector, and the mask that describes it.

    About ``dead_fraction`` of the pixels read 0 and ``n_hot`` pixels read 1e6 counts in every
    pattern (both in ``bad_pixels``); with ``saturation_quantile`` the counts are clipped at
    that quantile of the clean counts (``saturation_counts``), so the brightest pixels of some
    patterns saturate. The amplitudes stay ``sqrt(counts)`` float32 like a reader's.
    """
    import dataclasses

    generator = np.random.default_rng(seed)
    counts = np.rint(np.square(np.asarray(scan.diffraction, np.float64)))
    n = counts.shape[-1]
    dead = generator.random((n, n)) < dead_fraction
    hot = np.zeros((n, n), bool)
    hot.flat[generator.choice(n * n, n_hot, replace=False)] = True
    hot &= ~dead
    saturation = None
    if saturation_quantile is not None:
        saturation = float(np.quantile(counts, saturation_quantile))
        counts = np.minimum(counts, saturation)
    counts[:, dead] = 0.0
    counts[:, hot] = 1e6
    return dataclasses.replace(scan, diffraction=np.sqrt(counts).astype(np.float32),
                               bad_pixels=dead | hot, saturation_counts=saturation,
                               notes=list(scan.notes))


def make_library_scans(source_dir=None):
    """Two small N=64 scans for multi-scan training: different probes, photon counts, sizes.

    ``a``: 25 positions, the default probe, 1e5 photons per pattern; ``b``: 36 positions, a
    defocused probe, 1e7 photons. Each is simulated with its own probe (Poisson counts) and
    keeps its ground truth. With ``source_dir`` they are written there as ``a.npz`` and
    ``b.npz`` (and their ``source`` set to those paths). Returns ``(a, b)``.
    """
    import dataclasses
    from pathlib import Path

    from ptycho import physics
    from ptycho.data.npz import write_scan_npz
    from ptycho.data.sim_probes import defocused_probe

    scans = []
    for name, n_side, nphotons, probe, seed in (
            ("a", 5, 1e5, physics.default_probe(64), 0), ("b", 6, 1e7, defocused_probe(64), 1)):
        base = make_test_scan(n_side=n_side, nphotons=nphotons, seed=seed)
        intensity = physics.simulate_amplitude(base.object_guess, probe, base.xcoords,
                                               base.ycoords) ** 2
        intensity *= nphotons / intensity.sum(axis=(1, 2)).mean()
        counts = np.random.default_rng(seed).poisson(intensity)
        scan = dataclasses.replace(base, diffraction=np.sqrt(counts).astype(np.float32),
                                   probe=np.asarray(probe, np.complex64))
        if source_dir is not None:
            path = Path(source_dir) / f"{name}.npz"
            write_scan_npz(path, scan)
            scan.source = str(path)
        scans.append(scan)
    return tuple(scans)
