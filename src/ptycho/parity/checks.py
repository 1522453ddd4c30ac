"""Numerical parity checks: each backend against :mod:`ptycho.physics` and against each other.

Every check returns a list of :class:`CheckResult` rows (one per quantity, comparison and
dtype). The tests in ``tests/parity/`` assert on exactly these rows, and ``ptychopinn parity``
runs the same functions in the harness process to print the parity table.

Groups of checks
----------------
component
    The forward-model operations of each backend (extraction at sub-pixel positions,
    re-extraction after the object_big merge, member patches without merge, illumination with
    mask and smoothing, smoothing, far field, intensity scaling, Poisson NLL, and the Poisson
    NLL and amplitude MAE over the valid pixels of a detector mask) on random complex
    inputs with an asymmetric complex probe, in float32 and, where the backend op supports it,
    float64; the ``ffno`` generator's spectral convolution along each axis against
    ``numpy.fft``; and the mixed-state intensity of 3 incoherent probe modes
    (:func:`ptycho.physics.mixed_state_intensity`). Tolerances: relative error <= 1e-5
    (float32), <= 1e-6 (float64).
model
    For each generator architecture (``cnn``, ``unet``, ``resnet``, ``ffno``), a torch ``PtychoPINN``
    with its random initial weights copied into the Keras model
    (:mod:`ptycho.backends.weight_transfer`), both fed the same simulated batch: generator patches,
    member patches, the patch on the group mean, predicted amplitudes, the training loss
    (also with a detector mask) and ``TrainedModel.predict``; relative error <= 1e-5. Plus the weight round trip
    torch -> Keras -> torch (exact). Also a cnn with 3 probe modes (:data:`MIXED_STATE_CASES`).
training
    From the same initial weights, ``steps`` Adam steps on the same batches in both backends
    (torch: ``PINNLightning._loss`` + ``torch.optim.Adam``; Keras:
    ``PINNTrainer.compute_batch_loss`` + ``keras.optimizers.Adam`` with torch's epsilon);
    the loss curves agree to 1e-3 (relative). Also with the warm-up + cosine schedule and
    gradient-norm clipping of each backend (recipe ``'cosine+clip'``), and with 3 trainable
    probe modes (recipe ``'probe_trainable'``).

Relative error is ``max|a - b| / max|b|`` with ``b`` the reference (NumPy float64 physics, or
the TensorFlow result when the two backends are compared directly).

Frameworks are imported inside the functions; a backend that is not installed gives rows with
``error`` set instead of numbers (see :func:`run_checks`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ptycho import physics

TOL_F32 = 1e-5
TOL_F64 = 1e-6
TOL_MODEL = 1e-5
TOL_CURVE = 1e-3

TORCH = "pytorch"
TF = "tensorflow"
REFERENCE = "reference"

# Which component ops each backend implements in float64 (the rest are float32 layers/ops).
FLOAT64_OPS = {
    TORCH: {"extraction", "member_shift", "merge_extract", "smoothing", "far_field", "poisson_nll",
            "masked_data_terms", "fourier_axis", "mixed_state"},
    TF: {"extraction", "member_shift", "smoothing", "poisson_nll", "masked_data_terms",
         "fourier_axis", "mixed_state"},
}


@dataclass
class CheckResult:
    """One row of the parity table.

    ``comparison`` is ``"pytorch vs reference"``, ``"tensorflow vs reference"`` or
    ``"pytorch vs tensorflow"``; ``error`` is set (and the numbers are NaN) when the check
    could not run.
    """

    group: str
    quantity: str
    comparison: str
    dtype: str
    max_abs: float
    max_rel: float
    tolerance: float
    config: str = ""
    error: str | None = None
    missing_backend: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and math.isfinite(self.max_rel) and self.max_rel <= self.tolerance

    def as_dict(self) -> dict:
        row = dataclasses.asdict(self)
        row["passed"] = self.passed
        return row


def compare(actual, expected) -> tuple[float, float]:
    """``(max |a - e|, max |a - e| / max |e|)`` in float64 (a scalar compares as one value)."""
    a = np.asarray(actual).astype(np.complex128 if np.iscomplexobj(actual) else np.float64)
    e = np.asarray(expected).astype(np.complex128 if np.iscomplexobj(expected) else np.float64)
    if a.shape != e.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {e.shape}")
    max_abs = float(np.max(np.abs(a - e))) if a.size else 0.0
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    return max_abs, (max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf))


def _row(group, quantity, comparison, dtype, actual, expected, tolerance, config="") -> CheckResult:
    max_abs, max_rel = compare(actual, expected)
    return CheckResult(group, quantity, comparison, dtype, max_abs, max_rel, tolerance, config)


def _tol(dtype: str) -> float:
    return TOL_F64 if dtype == "float64" else TOL_F32


# ---------------------------------------------------------------------------------------------
# Test data
# ---------------------------------------------------------------------------------------------

def random_complex(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def asymmetric_probe(N: int, rng: np.random.Generator) -> np.ndarray:
    """An off-centre, anisotropic Gaussian probe with a non-symmetric phase (complex128).

    No mirror or point symmetry, so that a flipped or transposed convention shows up.
    """
    axis = np.arange(N) - N / 2 + 0.5
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    x0, y0 = rng.uniform(-N / 16, N / 16, 2)
    amplitude = np.exp(-0.5 * (((xx - x0) / (N / 7)) ** 2 + ((yy - y0) / (N / 10)) ** 2))
    phase = 2 * np.pi * (0.6 * xx / N + 1.3 * (yy / N) ** 2 + 0.8 * xx * yy / N ** 2)
    probe = amplitude * np.exp(1j * phase)
    return probe + 0.02 * random_complex(rng, (N, N))


def _smooth_object(rng: np.random.Generator, size: int) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    amplitude = gaussian_filter(rng.random((size, size)), 2)
    amplitude = 0.5 + 0.5 * (amplitude - amplitude.min()) / max(np.ptp(amplitude), 1e-12)
    phase = gaussian_filter(rng.standard_normal((size, size)), 3)
    phase = 1.2 * phase / max(np.abs(phase).max(), 1e-12)
    return amplitude * np.exp(1j * phase)


@dataclass
class SyntheticBatch:
    """A simulated batch in the legacy layout (what both backends' trainers consume).

    ``x`` (B, N, N, C) float32 normalised amplitudes X; ``offsets`` (B, 1, 2, C) float32
    ``coords_relative``; ``probe`` (N, N) complex64 normalised ((M, N, N) for M modes);
    ``scale`` the dataset's s.
    """

    x: np.ndarray
    offsets: np.ndarray
    probe: np.ndarray
    scale: float


def synthetic_batches(N: int, gridsize: int, batch_size: int, n_batches: int = 1,
                      seed: int = 0, nphotons: float = 1e5,
                      probe_modes: int = 1) -> list[SyntheticBatch]:
    """Batches simulated with :mod:`ptycho.physics` at sub-pixel positions.

    Each sample is a group of ``gridsize**2`` positions (a jittered square of side 6 px around
    a jittered centre) on one smooth random complex object, illuminated by an
    :func:`asymmetric_probe` (``probe_modes`` M > 1: M incoherent modes made from it by
    :func:`ptycho.physics.initial_probe_modes`); the amplitudes are normalised over all
    batches together.
    """
    rng = np.random.default_rng(seed)
    channels = gridsize ** 2
    size = N + 24
    obj = _smooth_object(rng, size)
    probe = physics.normalize_probe(physics.initial_probe_modes(asymmetric_probe(N, rng),
                                                                probe_modes))
    total = batch_size * n_batches
    centres = size / 2 + rng.uniform(-5, 5, (total, 1, 2))
    if gridsize == 1:
        grid = np.zeros((1, 2))
    else:
        ticks = (np.arange(gridsize) - (gridsize - 1) / 2) * 6.0
        grid = np.stack(np.meshgrid(ticks, ticks, indexing="ij")[::-1], -1).reshape(-1, 2)
    coords = centres + grid[None] + (rng.uniform(-0.5, 0.5, (total, channels, 2))
                                     if channels > 1 else 0.0)
    flat = coords.reshape(-1, 2)
    patches = physics.extract_patches(obj, flat[:, 0], flat[:, 1], N)
    amplitude = np.sqrt(physics.mixed_state_intensity(patches, probe)) if probe_modes > 1 \
        else physics.far_field_amplitude(physics.illuminate(patches, probe))
    x = physics.normalize_diffraction(amplitude).reshape(total, channels, N, N)
    x = np.ascontiguousarray(np.moveaxis(x, 1, -1)).astype(np.float32)
    mean = coords.mean(axis=1, keepdims=True)
    rel = -(coords - mean)                                        # legacy coords_relative
    offsets = np.transpose(rel, (0, 2, 1))[:, None].astype(np.float32)  # (B, 1, 2, C)
    scale = physics.intensity_scale(nphotons, N)
    probe64 = probe.astype(np.complex64)
    return [SyntheticBatch(x[i:i + batch_size], offsets[i:i + batch_size], probe64, scale)
            for i in range(0, total, batch_size)]


# ---------------------------------------------------------------------------------------------
# Backend adapters for the component ops (channels-first NumPy in, NumPy out)
# ---------------------------------------------------------------------------------------------

def _as_numpy(array, dtype: str, complex_: bool) -> np.ndarray:
    """``array`` as the NumPy dtype of a check's precision ('float32'/'float64'), real or complex."""
    if complex_:
        return np.asarray(array, np.complex128 if dtype == "float64" else np.complex64)
    return np.asarray(array, np.float64 if dtype == "float64" else np.float32)


class _TorchOps:
    name = TORCH

    def __init__(self):
        import torch

        from ptycho.backends.pytorch import forward_model as fm

        self.torch, self.fm = torch, fm

    def _c(self, array, dtype):
        return self.torch.as_tensor(_as_numpy(array, dtype, complex_=True))

    def _r(self, array, dtype):
        return self.torch.as_tensor(_as_numpy(array, dtype, complex_=False))

    def translate(self, images, shifts, dtype):
        return self.fm.translate(self._c(images, dtype), self._r(shifts, dtype)).numpy()

    def merge_extract(self, patches, rel, pad_object, dtype):
        members, centre = self.fm.merge_and_extract(self._c(patches, dtype), self._r(rel, dtype),
                                                    pad_object)
        return members.numpy(), centre.numpy()[:, 0]

    def member_shift(self, obj, rel, dtype):
        return self.fm.shift_single_patch(self._c(obj[:, None], dtype), self._r(rel, dtype)).numpy()

    def illuminate(self, patches, probe, mask, sigma):
        layer = self.fm.ProbeIllumination(probe, False, mask, sigma)
        with self.torch.no_grad():
            return layer(self._c(patches, "float32")).numpy()

    def smooth(self, field, sigma, dtype):
        return self.fm.smooth_field(self._c(field, dtype), sigma).numpy()

    def far_field(self, psi, dtype):
        return self.fm.far_field_amplitude(self._c(psi, dtype)).numpy()

    def mixed_state(self, psi, dtype):
        return self.fm.mixed_state_amplitude(self._c(psi, dtype)).numpy() ** 2

    def mixed_state_layer(self, patches, probe, mask, sigma):
        layer = self.fm.ProbeIllumination(probe, False, mask, sigma)
        with self.torch.no_grad():
            field = layer(self._c(patches, "float32"))
            return self.fm.mixed_state_amplitude(field).numpy() ** 2

    def scaled_amplitude(self, amplitude, scale):
        scaler = self.fm.IntensityScaler(scale, trainable=False)
        with self.torch.no_grad():
            return (self._r(amplitude, "float32") * scaler.scale()).numpy()

    def poisson(self, pred, counts, dtype, valid=None):
        valid = None if valid is None else self.torch.as_tensor(np.asarray(valid, bool))
        return float(self.fm.poisson_nll(self._r(pred, dtype), self._r(counts, dtype),
                                         valid=valid))

    def amplitude_mae(self, pred, amplitude, dtype, valid):
        difference = (self._r(pred, dtype) - self._r(amplitude, dtype)).abs()
        return float(self.fm.masked_mean(difference, self.torch.as_tensor(np.asarray(valid, bool))))

    def fourier_axis(self, h, weight_real, weight_imag, axis, dtype):
        from ptycho.backends.pytorch.network import fourier_axis

        bases = _fourier_bases(h, weight_real, axis)
        return fourier_axis(*(self._r(a, dtype) for a in (h, weight_real, weight_imag, *bases)),
                            axis).numpy()


class _TFOps:
    name = TF

    def __init__(self):
        from ptycho.backends import load_backend

        load_backend(TF)
        import tensorflow as tf

        from ptycho.backends.tensorflow import forward_model as fm

        self.tf, self.fm = tf, fm

    def _c(self, array, dtype):
        return self.tf.constant(_as_numpy(array, dtype, complex_=True))

    def _r(self, array, dtype):
        return self.tf.constant(_as_numpy(array, dtype, complex_=False))

    @staticmethod
    def _last(array):
        return np.moveaxis(array, 1, -1)

    @staticmethod
    def _first(array):
        return np.moveaxis(np.asarray(array), -1, 1)

    def translate(self, images, shifts, dtype):
        return self.fm.translate(self._c(images, dtype), self._r(shifts, dtype)).numpy()

    def merge_extract(self, patches, rel, pad_object, dtype):
        members, centre = self.fm.merge_and_extract(self._c(self._last(patches), dtype),
                                                    self._r(rel, dtype), pad_object)
        return self._first(members.numpy()), centre.numpy()[..., 0]

    def member_shift(self, obj, rel, dtype):
        return self._first(self.fm.shift_single_patch(self._c(obj[..., None], dtype),
                                                      self._r(rel, dtype)).numpy())

    def illuminate(self, patches, probe, mask, sigma):
        layer = self.fm.ProbeIllumination(probe, probe_trainable=False, mask=mask,
                                          smoothing_sigma=sigma)
        return self._first(layer(self._c(self._last(patches), "float32")).numpy())

    def smooth(self, field, sigma, dtype):
        return self._first(self.fm.smooth_field(self._c(self._last(field), dtype), sigma).numpy())

    def far_field(self, psi, dtype):
        return self._first(self.fm.far_field_amplitude(self._c(self._last(psi), dtype)).numpy())

    def mixed_state(self, psi, dtype):
        psi = np.moveaxis(psi, 2, -1)                          # (B, M, C, N, N) -> (B, M, N, N, C)
        return self._first(self.fm.mixed_state_amplitude(self._c(psi, dtype)).numpy()) ** 2

    def mixed_state_layer(self, patches, probe, mask, sigma):
        layer = self.fm.ProbeIllumination(probe, probe_trainable=False, mask=mask,
                                          smoothing_sigma=sigma)
        field = layer(self._c(self._last(patches), "float32"))
        return self._first(self.fm.mixed_state_amplitude(field).numpy()) ** 2

    def scaled_amplitude(self, amplitude, scale):
        scaler = self.fm.IntensityScaler(scale, scale_trainable=False)
        return (self._r(amplitude, "float32") * scaler.scale()).numpy()

    def poisson(self, pred, counts, dtype, valid=None):
        valid = None if valid is None else self.tf.constant(np.asarray(valid, bool))
        return float(self.fm.poisson_nll(self._r(pred, dtype), self._r(counts, dtype),
                                         valid=valid))

    def amplitude_mae(self, pred, amplitude, dtype, valid):
        difference = self.tf.abs(self._r(pred, dtype) - self._r(amplitude, dtype))
        return float(self.fm.masked_mean(difference, self.tf.constant(np.asarray(valid, bool))))

    def fourier_axis(self, h, weight_real, weight_imag, axis, dtype):
        from ptycho.backends.tensorflow.network import fourier_axis

        bases = _fourier_bases(h, weight_real, axis)
        return fourier_axis(*(self._r(a, dtype) for a in (h, weight_real, weight_imag, *bases)),
                            axis).numpy()


def _fourier_bases(h, weight_real, axis: str):
    """The rfft/irfft bases for the transformed axis of channels-last ``h`` (B, H, W, C)."""
    from ptycho.backends.architecture import fourier_bases

    return fourier_bases(h.shape[1 if axis == "y" else 2], weight_real.shape[-1])


_OPS: dict[str, Callable] = {TORCH: _TorchOps, TF: _TFOps}
_OPS_CACHE: dict[str, object] = {}


def backend_ops(backend: str):
    """The component-op adapter of ``backend`` (imports the framework on first use)."""
    if backend not in _OPS_CACHE:
        _OPS_CACHE[backend] = _OPS[backend]()
    return _OPS_CACHE[backend]


# ---------------------------------------------------------------------------------------------
# Component checks
# ---------------------------------------------------------------------------------------------

def _component_rows(op: str, quantity: str, compute: Callable, reference, backends: Iterable[str],
                    dtypes: Iterable[str] = ("float32", "float64"), config: str = "") -> list:
    """Rows for ``compute(ops, dtype)`` of each backend vs ``reference``, plus torch vs tf."""
    rows = []
    results: dict[tuple[str, str], np.ndarray] = {}
    backends = list(backends)
    for dtype in dtypes:
        for backend in backends:
            if dtype == "float64" and op not in FLOAT64_OPS[backend]:
                continue
            value = compute(backend_ops(backend), dtype)
            results[backend, dtype] = value
            rows.append(_row("component", quantity, f"{backend} vs {REFERENCE}", dtype, value,
                             reference, _tol(dtype), config))
        if (TORCH, dtype) in results and (TF, dtype) in results:
            rows.append(_row("component", quantity, f"{TORCH} vs {TF}", dtype,
                             results[TORCH, dtype], results[TF, dtype], _tol(dtype), config))
    return rows


def check_extraction(backends=(TORCH, TF), seed: int = 0, N: int = 16) -> list[CheckResult]:
    """Patches at sub-pixel scan positions of a random complex object.

    Backend: ``translate`` the object by ``(N/2 - x, N/2 - y)`` and crop ``N x N`` (the patch
    convention of design section 2); reference :func:`ptycho.physics.extract_patches`.
    """
    rng = np.random.default_rng(seed)
    obj = random_complex(rng, (3 * N, 3 * N))
    x = rng.uniform(N / 2, 2.5 * N, 6)
    y = rng.uniform(N / 2, 2.5 * N, 6)
    reference = physics.extract_patches(obj, x, y, N)
    shifts = np.stack([N / 2 - x, N / 2 - y], axis=1)
    images = np.repeat(obj[None], len(x), axis=0)

    def compute(ops, dtype):
        return ops.translate(images, shifts, dtype)[:, :N, :N]

    return _component_rows("extraction", "extraction at sub-pixel positions", compute, reference,
                           backends, config=f"N={N}, 6 positions")


def check_member_shift(backends=(TORCH, TF), seed: int = 1, N: int = 16) -> list[CheckResult]:
    """Member patches from one group-centred patch (object_big off): pad, shift by +rel, crop."""
    rng = np.random.default_rng(seed)
    obj = random_complex(rng, (3, N, N))
    rel = rng.uniform(-3, 3, (3, 4, 2))
    pad = physics.merge_padding_px(rel)
    reference = np.stack([
        physics.translate(np.repeat(np.pad(o, pad)[None], 4, axis=0), r)[:, pad:pad + N, pad:pad + N]
        for o, r in zip(obj, rel)])

    def compute(ops, dtype):
        return ops.member_shift(obj, rel, dtype)

    return _component_rows("member_shift", "member patches (object_big off)", compute, reference,
                           backends, config=f"N={N}, B=3, C=4")


def check_merge_extract(backends=(TORCH, TF), seed: int = 2, N: int = 16) -> list[CheckResult]:
    """object_big merge on one canvas per sample and re-extraction (pad_object on and off)."""
    rows = []
    rng = np.random.default_rng(seed)
    patches = random_complex(rng, (3, 4, N, N))
    rel = rng.uniform(-3, 3, (3, 4, 2))
    for pad_object in (True, False):
        reference = physics.merge_and_extract(patches, rel, pad_object)

        def compute(ops, dtype, pad_object=pad_object):
            return ops.merge_extract(patches, rel, pad_object, dtype)[0]

        rows += _component_rows("merge_extract",
                                f"object_big merge + re-extraction (pad_object={pad_object})",
                                compute, reference, backends, config=f"N={N}, B=3, C=4")
    return rows


def check_illumination(backends=(TORCH, TF), seed: int = 3, N: int = 16) -> list[CheckResult]:
    """``ProbeIllumination`` layer with an asymmetric complex probe, disk mask and smoothing."""
    rows = []
    rng = np.random.default_rng(seed)
    probe = asymmetric_probe(N, rng)
    patches = random_complex(rng, (2, 3, N, N))
    for mask, sigma in ((True, 0.7), (False, 0.0)):
        reference = physics.illuminate(patches, probe, mask=mask, smoothing_sigma=sigma)

        def compute(ops, dtype, mask=mask, sigma=sigma):
            return ops.illuminate(patches, probe, mask, sigma)

        rows += _component_rows("illumination",
                                f"illumination (mask={mask}, smoothing sigma={sigma})",
                                compute, reference, backends, dtypes=("float32",),
                                config=f"N={N}, asymmetric complex probe")
    return rows


def check_smoothing(backends=(TORCH, TF), seed: int = 4, N: int = 16) -> list[CheckResult]:
    rng = np.random.default_rng(seed)
    field_ = random_complex(rng, (2, 3, N, N))
    reference = physics.smooth_field(field_, 0.8)

    def compute(ops, dtype):
        return ops.smooth(field_, 0.8, dtype)

    return _component_rows("smoothing", "smoothing of the illuminated field (sigma=0.8)",
                           compute, reference, backends, config=f"N={N}")


def check_far_field(backends=(TORCH, TF), seed: int = 5, N: int = 16) -> list[CheckResult]:
    rng = np.random.default_rng(seed)
    psi = random_complex(rng, (2, 3, N, N))
    reference = physics.far_field_amplitude(psi)

    def compute(ops, dtype):
        return ops.far_field(psi, dtype)

    return _component_rows("far_field", "far-field amplitude |fftshift(fft2)|/N", compute,
                           reference, backends, config=f"N={N}")


def check_intensity_scaling(backends=(TORCH, TF), seed: int = 6, N: int = 64) -> list[CheckResult]:
    """``IntensityScaler`` (exp of the stored log s) times the amplitude, and the counts."""
    rng = np.random.default_rng(seed)
    psi = physics.illuminate(random_complex(rng, (2, 1, N, N)), asymmetric_probe(N, rng))
    amplitude = physics.far_field_amplitude(psi)
    scale = physics.intensity_scale(1e6, N)
    rows = _component_rows("scaling", "scaled amplitude s*A", lambda ops, dtype:
                           ops.scaled_amplitude(amplitude, scale), scale * amplitude, backends,
                           dtypes=("float32",), config=f"N={N}, nphotons=1e6")
    rows += _component_rows("scaling", "expected counts (s*A)^2", lambda ops, dtype:
                            ops.scaled_amplitude(amplitude, scale) ** 2, (scale * amplitude) ** 2,
                            backends, dtypes=("float32",), config=f"N={N}, nphotons=1e6")
    return rows


def check_poisson_nll(backends=(TORCH, TF), seed: int = 7) -> list[CheckResult]:
    rng = np.random.default_rng(seed)
    pred = rng.uniform(0.1, 50, (4, 16, 16))
    counts = rng.poisson(pred).astype(float)
    reference = physics.poisson_nll(pred, counts)

    def compute(ops, dtype):
        return ops.poisson(pred, counts, dtype)

    return _component_rows("poisson_nll", "Poisson NLL (mean)", compute, reference, backends,
                           config="4x16x16 counts")


def check_masked_data_terms(backends=(TORCH, TF), seed: int = 8) -> list[CheckResult]:
    """Poisson NLL and amplitude MAE over the valid pixels of a detector mask.

    Counts of 4 patterns with 10 % bad pixels (set to 0 or to hot values) and a saturation
    level that masks the brightest pixels of some patterns only; the valid pixels are
    :func:`ptycho.physics.valid_pixels` and the reference the masked physics functions.
    """
    rng = np.random.default_rng(seed)
    pred = rng.uniform(0.1, 50, (4, 16, 16))
    counts = rng.poisson(pred).astype(float)
    bad = rng.random((16, 16)) < 0.1
    counts[:, bad] = np.where(rng.random(int(bad.sum())) < 0.5, 0.0, 1e4)
    saturation = float(np.quantile(counts[:, ~bad], 0.97))
    valid = physics.valid_pixels(np.sqrt(counts), bad, saturation)
    config = f"4x16x16 counts, {int(bad.sum())} bad pixels, saturation {saturation:g}"
    rows = _component_rows(
        "masked_data_terms", "Poisson NLL over valid pixels",
        lambda ops, dtype: ops.poisson(pred, counts, dtype, valid),
        physics.poisson_nll(pred, counts, valid=valid), backends, config=config)
    rows += _component_rows(
        "masked_data_terms", "amplitude MAE over valid pixels",
        lambda ops, dtype: ops.amplitude_mae(np.sqrt(pred), np.sqrt(counts), dtype, valid),
        physics.amplitude_mae(np.sqrt(pred), np.sqrt(counts), valid), backends, config=config)
    return rows


def check_fourier_axis(backends=(TORCH, TF), seed: int = 9, H: int = 16, W: int = 24
                       ) -> list[CheckResult]:
    """The ``ffno`` spectral convolution along each axis against ``numpy.fft``.

    Random channels-last features (2, H, W, 3) (H != W, so a swapped axis shows up) and a
    random complex (3 x 4) matrix per kept frequency (5 modes); reference: ``rfft`` along the
    axis, the lowest 5 coefficients times the matrices, ``irfft`` back (length H or W).
    """
    rng = np.random.default_rng(seed)
    modes = 5
    h = rng.standard_normal((2, H, W, 3))
    weight_real, weight_imag = rng.standard_normal((2, 3, 4, modes))
    rows = []
    for axis, dim in (("y", 1), ("x", 2)):
        length = h.shape[dim]
        spectrum = np.moveaxis(np.fft.rfft(h, axis=dim), dim, -2)[..., :modes, :]
        mixed = np.einsum("...kc,cok->...ko", spectrum, weight_real + 1j * weight_imag)
        full = np.zeros(mixed.shape[:-2] + (length // 2 + 1, 4), complex)
        full[..., :modes, :] = mixed
        reference = np.moveaxis(np.fft.irfft(full, n=length, axis=-2), -2, dim)

        def compute(ops, dtype, axis=axis):
            return ops.fourier_axis(h, weight_real, weight_imag, axis, dtype)

        rows += _component_rows("fourier_axis",
                                f"ffno spectral convolution along {axis} ({modes} modes)",
                                compute, reference, backends,
                                config=f"(2, {H}, {W}, 3) -> 4 channels")
    return rows


def check_mixed_state_intensity(backends=(TORCH, TF), seed: int = 10, N: int = 16
                                ) -> list[CheckResult]:
    """Mixed-state intensity ``sum_k |F(P_k * O)|**2`` of 3 incoherent modes.

    Reference :func:`ptycho.physics.mixed_state_intensity`. The backends' incoherent sum
    (``mixed_state_amplitude`` squared) of the modes' exit waves in float32 and float64, and
    the whole ``ProbeIllumination`` layer with a (3, N, N) probe (float32 weights) with and
    without the disk mask and smoothing. Three asymmetric complex modes of unequal power,
    random complex patches (B=2, C=3).
    """
    rng = np.random.default_rng(seed)
    probe = np.stack([asymmetric_probe(N, rng), 0.5 * asymmetric_probe(N, rng)[::-1],
                      0.2j * asymmetric_probe(N, rng).T])
    patches = random_complex(rng, (2, 3, N, N))
    config = f"N={N}, 3 modes, B=2, C=3"
    psi = np.stack([physics.illuminate(patches, mode) for mode in probe], axis=1)
    rows = _component_rows("mixed_state", "mixed-state intensity sum_k |F(psi_k)|^2",
                           lambda ops, dtype: ops.mixed_state(psi, dtype),
                           physics.mixed_state_intensity(patches, probe), backends,
                           config=config)
    for mask, sigma in ((False, 0.0), (True, 0.7)):
        reference = physics.mixed_state_intensity(patches, probe, mask, sigma)

        def compute(ops, dtype, mask=mask, sigma=sigma):
            return ops.mixed_state_layer(patches, probe, mask, sigma)

        rows += _component_rows("mixed_state", f"mixed-state intensity through the "
                                f"illumination layer (mask={mask}, smoothing sigma={sigma})",
                                compute, reference, backends, dtypes=("float32",),
                                config=config)
    return rows


COMPONENT_CHECKS = (check_extraction, check_member_shift, check_merge_extract,
                    check_illumination, check_smoothing, check_far_field,
                    check_intensity_scaling, check_poisson_nll, check_masked_data_terms,
                    check_fourier_axis, check_mixed_state_intensity)


def component_checks(backends=(TORCH, TF)) -> list[CheckResult]:
    """Every component check for ``backends``."""
    rows = []
    for check in COMPONENT_CHECKS:
        rows += check(backends)
    return rows


# ---------------------------------------------------------------------------------------------
# Model checks (weights transferred torch -> Keras)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelCase:
    N: int = 64
    gridsize: int = 1
    object_big: bool = True
    probe_big: bool = True
    n_filters_scale: int = 1
    architecture: str = "cnn"
    probe_modes: int = 1

    def model_config(self):
        from ptycho.config.config import ModelConfig

        return ModelConfig(N=self.N, gridsize=self.gridsize, object_big=self.object_big,
                           probe_big=self.probe_big, n_filters_scale=self.n_filters_scale,
                           architecture=self.architecture, probe_modes=self.probe_modes)

    def label(self) -> str:
        """``N=64 gs=1 object_big=on probe_big=on``, prefixed by the architecture unless cnn,
        followed by ``probe_modes=M`` for a mixed-state probe."""
        prefix = "" if self.architecture == "cnn" else f"{self.architecture} "
        return (f"{prefix}N={self.N} gs={self.gridsize} "
                f"object_big={'on' if self.object_big else 'off'} "
                f"probe_big={'on' if self.probe_big else 'off'}"
                + (f" probe_modes={self.probe_modes}" if self.probe_modes > 1 else ""))


def model_cases(architecture: str = "cnn", level: str = "full") -> tuple[ModelCase, ...]:
    """The model configurations of one architecture checked at ``level``.

    full: all 16 combinations of N = 64/128, gridsize 1/2, object_big and probe_big on/off;
    standard: the 8 N=64 ones and N=128 gs=2 object_big probe_big; quick: N=64 gs=2
    object_big probe_big.
    """
    every = tuple(ModelCase(N, gs, ob, pb, architecture=architecture) for N in (64, 128)
                  for gs in (1, 2) for ob in (True, False) for pb in (True, False))
    if level == "full":
        return every
    if level == "standard":
        return tuple(c for c in every if c.N == 64) + (
            ModelCase(128, 2, True, True, architecture=architecture),)
    if level == "quick":
        return (ModelCase(64, 2, True, True, architecture=architecture),)
    raise ValueError(f"level must be one of full, standard, quick (got {level!r})")


#: Every cnn model configuration (see :func:`model_cases`).
MODEL_CASES = model_cases("cnn")

#: The mixed-state model cases (cnn, 3 probe modes), checked at the full and standard levels.
MIXED_STATE_CASES = (ModelCase(64, 1, True, True, probe_modes=3),
                     ModelCase(64, 2, True, True, probe_modes=3))


@contextlib.contextmanager
def deterministic_torch(threads: int = 1):
    """One intra-op thread for torch inside the block (restored after).

    Fixes the reduction order of the float32 sums, and avoids the OpenMP spin-waiting that
    makes small torch ops 5-10x slower on a loaded 2-core machine.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _torch_pair(case: ModelCase, batch: SyntheticBatch, seed: int, train_config=None):
    """A torch PINN (seeded random init), its Lightning module, and the Keras copy."""
    import torch

    from ptycho.backends import load_backend
    from ptycho.backends.pytorch.lightning_module import PINNLightning
    from ptycho.backends.pytorch.model import PtychoPINN as TorchPINN
    from ptycho.config.config import TrainingConfig

    load_backend(TF)
    from ptycho.backends.tensorflow.model import PtychoPINN as KerasPINN
    from ptycho.backends.tensorflow.training import PINNTrainer
    from ptycho.backends.weight_transfer import load_state_into_keras, state_from_torch

    cfg = case.model_config()
    train_config = train_config or TrainingConfig(model=cfg)
    torch.manual_seed(seed)
    module = TorchPINN(cfg, batch.probe, batch.scale,
                       probe_trainable=train_config.probe_trainable)
    lit = PINNLightning(module, train_config, batch.scale)
    pinn = KerasPINN(cfg, batch.probe, batch.scale, probe_trainable=train_config.probe_trainable)
    load_state_into_keras(pinn, state_from_torch(module))
    trainer = PINNTrainer(pinn, train_config, batch.scale)
    return module, lit, pinn, trainer


def _torch_batch(batch: SyntheticBatch) -> dict:
    import torch

    from ptycho.backends.pytorch.model import offsets_to_torch

    return {"x": torch.from_numpy(np.ascontiguousarray(np.moveaxis(batch.x, -1, 1))),
            "rel": torch.from_numpy(offsets_to_torch(batch.offsets))}


def check_model(case: ModelCase, seed: int = 0, batch_size: int = 2) -> list[CheckResult]:
    """Forward pass, loss and predict of both backends with the same (transferred) weights."""
    with deterministic_torch():
        return _check_model(case, seed, batch_size)


def _check_model(case: ModelCase, seed: int, batch_size: int) -> list[CheckResult]:
    import torch

    from ptycho.backends.pytorch.trained_model import TorchTrainedModel
    from ptycho.backends.tensorflow.training import TFTrainedModel
    from ptycho.backends.weight_transfer import (
        load_state_into_torch,
        state_from_keras,
        state_from_torch,
    )

    batch = synthetic_batches(case.N, case.gridsize, batch_size, seed=seed,
                              probe_modes=case.probe_modes)[0]
    module, lit, pinn, trainer = _torch_pair(case, batch, seed)
    tb = _torch_batch(batch)
    with torch.no_grad():
        out = module(tb["x"] * batch.scale, tb["rel"])
        torch_loss = float(lit._loss(tb))
    keras_out = pinn.forward(batch.x * np.float32(batch.scale), batch.offsets)
    keras_loss = float(trainer.compute_batch_loss((batch.x, batch.offsets)))
    # a detector mask: 5 % of the pixels of each pattern left out of the data terms
    valid = np.random.default_rng(seed).random(batch.x.shape) > 0.05
    with torch.no_grad():
        torch_masked = float(lit._loss(dict(tb, valid=torch.from_numpy(
            np.ascontiguousarray(np.moveaxis(valid, -1, 1))))))
    keras_masked = float(trainer.compute_batch_loss((batch.x, batch.offsets, valid)))

    def last(t):
        return np.moveaxis(t.detach().cpu().numpy(), 1, -1)

    label = case.label()
    cmp = f"{TORCH} vs {TF}"
    rows = [
        _row("model", "generator object patches", cmp, "float32", last(out.patches),
             keras_out["patches"].numpy(), TOL_MODEL, label),
        _row("model", "member patches (after object_big)", cmp, "float32",
             last(out.member_patches), keras_out["member_patches"].numpy(), TOL_MODEL, label),
        _row("model", "predicted amplitude s*A", cmp, "float32", last(out.amplitude),
             keras_out["amplitude"].numpy(), TOL_MODEL, label),
        _row("model", "training loss (Poisson NLL)", cmp, "float32", torch_loss, keras_loss,
             TOL_MODEL, label),
        _row("model", "training loss with a detector mask", cmp, "float32", torch_masked,
             keras_masked, TOL_MODEL, label),
    ]
    inputs = [batch.x * np.float32(batch.scale), batch.offsets]
    torch_pred = TorchTrainedModel(module).predict(inputs)
    keras_pred = TFTrainedModel(pinn).predict(inputs)
    rows.append(_row("model", "predict: object patch on the group mean", cmp, "float32",
                     torch_pred, keras_pred, TOL_MODEL, label))
    # Round trip torch -> Keras -> torch must be exact.
    original = state_from_torch(module)
    from ptycho.backends.pytorch.model import PtychoPINN as TorchPINN

    back = TorchPINN(case.model_config(), batch.probe, batch.scale)
    load_state_into_torch(back, state_from_keras(pinn))
    returned = state_from_torch(back)
    worst = max(compare(returned[k], original[k])[0] for k in original)
    rows.append(CheckResult("model", "weights round trip torch -> keras -> torch",
                            "max |difference| over all weights", "float32", worst,
                            worst / max(float(np.max(np.abs(v))) for v in original.values()),
                            0.0, label))
    return rows


def model_checks(cases: Iterable[ModelCase] = MODEL_CASES) -> list[CheckResult]:
    rows = []
    for case in cases:
        rows += check_model(case)
    return rows


# ---------------------------------------------------------------------------------------------
# Training parity: loss curves of the same optimiser steps
# ---------------------------------------------------------------------------------------------

@dataclass
class LossCurves:
    torch: list[float] = field(default_factory=list)
    tensorflow: list[float] = field(default_factory=list)
    seconds: float = 0.0
    #: learning rate of each update in each backend
    torch_lr: list[float] = field(default_factory=list)
    tensorflow_lr: list[float] = field(default_factory=list)
    #: torch's global gradient L2 norm before clipping (with ``grad_clip_norm``)
    grad_norms: list[float] = field(default_factory=list)


KERAS_OPTIMIZERS = ("torch_adam", "keras_adam")

#: TrainingConfig settings of each training recipe the loss curves are compared with.
#: 'cosine+clip': ``steps / n_batches`` epochs of ``n_batches`` updates, one warm-up epoch,
#: cosine decay to lr/10, clip norm 20: over the 20 parity steps the gradient norm is 30-95 in
#: the first 10 updates (clipped) and 4-18 later (not clipped), so both branches of
#: ``min(1, c / ||g||)`` run. Clipping in torch only moves the curves apart by 1.1e-2.
RECIPES = {
    "adam": {},
    "cosine+clip": {"lr_schedule": "cosine", "lr_warmup_epochs": 1.0, "lr_min": 1e-4,
                    "grad_clip_norm": 20.0},
    "probe_trainable": {"probe_trainable": True},
}


def loss_curves(case: ModelCase = ModelCase(gridsize=2), steps: int = 20, batch_size: int = 4,
                n_batches: int = 5, seed: int = 0, keras_optimizer: str = "torch_adam",
                recipe: str = "adam") -> LossCurves:
    """Loss of each of ``steps`` Adam steps in both backends from the same initial weights.

    torch: ``PINNLightning._loss`` + the optimiser of ``configure_optimizers`` (``adam``);
    Keras: ``PINNTrainer.compute_batch_loss`` + either :func:`ptycho.parity.optim.torch_adam`
    (``'torch_adam'``: torch's update rule, epsilon 1e-8) or the Keras Adam the TensorFlow
    backend trains with (``'keras_adam'``: epsilon 1e-8 added to the uncorrected sqrt(v)).
    The batches cycle through ``n_batches`` simulated batches; the learning rate is
    ``TrainingConfig.learning_rate``. Loss ``k`` is evaluated with the weights after ``k``
    updates. torch runs on one thread (:func:`deterministic_torch`).

    ``recipe`` (a key of :data:`RECIPES`) adds the schedule and clipping of the training
    backends, each from its own code: torch ``cosine_scheduler`` stepped after every update and
    ``clip_gradients`` (Lightning's ``clip_grad_norm_``) before it; Keras the optimiser of
    ``make_optimizer`` (``WarmupCosine``, ``global_clipnorm``), with ``n_batches`` updates
    per epoch.
    """
    if keras_optimizer not in KERAS_OPTIMIZERS:
        raise ValueError(f"keras_optimizer must be one of {KERAS_OPTIMIZERS}")
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}")
    with deterministic_torch():
        return _loss_curves(case, steps, batch_size, n_batches, seed, keras_optimizer, recipe)


def _loss_curves(case: ModelCase, steps: int, batch_size: int, n_batches: int, seed: int,
                 keras_optimizer: str, recipe: str) -> LossCurves:
    import tensorflow as tf

    from ptycho.backends.pytorch.lightning_module import adam, clip_gradients, cosine_scheduler
    from ptycho.backends.tensorflow.training import make_optimizer
    from ptycho.config.config import TrainingConfig
    from ptycho.parity.optim import torch_adam

    start = time.perf_counter()
    batches = synthetic_batches(case.N, case.gridsize, batch_size, n_batches, seed=seed,
                                probe_modes=case.probe_modes)
    train_config = TrainingConfig(model=case.model_config(),
                                  nepochs=max(1, math.ceil(steps / n_batches)), **RECIPES[recipe])
    module, lit, pinn, trainer = _torch_pair(case, batches[0], seed, train_config)
    params = [p for p in module.parameters() if p.requires_grad]
    torch_opt = adam(params, train_config.learning_rate)
    scheduler = (cosine_scheduler(torch_opt, train_config, n_batches)
                 if train_config.lr_schedule == "cosine" else None)
    variables = pinn.trainable_variables
    keras_opt = make_optimizer(train_config, n_batches,
                               adam=torch_adam if keras_optimizer == "torch_adam" else None)
    keras_opt.build(variables)

    @tf.function(reduce_retracing=True)
    def keras_step(x, offsets):
        with tf.GradientTape() as tape:
            loss = trainer.compute_batch_loss((x, offsets))
        grads = tape.gradient(loss, variables)
        keras_opt.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        return loss

    curves = LossCurves()
    for step in range(steps):
        batch = batches[step % len(batches)]
        curves.torch_lr.append(float(torch_opt.param_groups[0]["lr"]))
        curves.tensorflow_lr.append(float(keras_opt.learning_rate))
        torch_opt.zero_grad()
        loss = lit._loss(_torch_batch(batch))
        loss.backward()
        norm = clip_gradients(params, train_config.grad_clip_norm)
        if norm is not None:
            curves.grad_norms.append(float(norm))
        torch_opt.step()
        if scheduler is not None:
            scheduler.step()
        curves.torch.append(float(loss.detach()))
        curves.tensorflow.append(float(keras_step(tf.constant(batch.x),
                                                  tf.constant(batch.offsets))))
    curves.seconds = time.perf_counter() - start
    return curves


def check_loss_curves(case: ModelCase = ModelCase(gridsize=2), steps: int = 20,
                      keras_optimizer: str = "torch_adam", recipe: str = "adam"
                      ) -> list[CheckResult]:
    """One row: the largest per-step relative difference of the two loss curves."""
    curves = loss_curves(case, steps, keras_optimizer=keras_optimizer, recipe=recipe)
    optimiser = ("Keras torch-rule Adam" if keras_optimizer == "torch_adam"
                 else "Keras Adam as trained (eps outside bias correction)")
    label = f"{case.label()}, {steps} Adam steps, {optimiser}"
    if recipe != "adam":
        label += f", {recipe} ({', '.join(f'{k}={v}' for k, v in RECIPES[recipe].items())})"
    torch_curve, keras_curve = np.asarray(curves.torch), np.asarray(curves.tensorflow)
    relative = np.abs(torch_curve - keras_curve) / np.abs(keras_curve)
    return [CheckResult("training", "loss curve (per step)", f"{TORCH} vs {TF}", "float32",
                        float(np.max(np.abs(torch_curve - keras_curve))),
                        float(np.max(relative)), TOL_CURVE, label)]


# ---------------------------------------------------------------------------------------------
# Everything, for the harness
# ---------------------------------------------------------------------------------------------

def _unavailable(group: str, quantity: str, backend: str, error: str) -> CheckResult:
    return CheckResult(group, quantity, backend, "-", math.nan, math.nan, math.nan,
                       error=error, missing_backend=backend)


def _guarded(group: str, quantity: str, function: Callable, *args, **kwargs) -> list[CheckResult]:
    """``function(*args, **kwargs)``, or one error row when it raises."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:     # a crashing check is a finding, not the end of the report
        return [CheckResult(group, quantity, f"{TORCH} vs {TF}", "-", math.nan, math.nan,
                            math.nan, error=f"{type(exc).__name__}: {exc}")]


def available_backends() -> tuple[list[str], dict[str, str]]:
    """``(usable backends, {backend: error})``, importing each backend once."""
    from ptycho.backends import load_backend

    usable, errors = [], {}
    for backend in (TORCH, TF):
        try:
            load_backend(backend)
            backend_ops(backend)
            usable.append(backend)
        except Exception as exc:    # report the exact error, whatever it is
            errors[backend] = f"{type(exc).__name__}: {exc}"
    return usable, errors


LEVELS = ("full", "standard", "quick")


#: Architectures whose model checks and loss curve the harness runs beside cnn's.
OTHER_ARCHITECTURES = ("unet", "resnet", "ffno")


def plan(level: str) -> tuple[tuple[ModelCase, ...],
                              tuple[tuple[str, int, str, ModelCase], ...]]:
    """``(model cases, ((keras optimizer, steps, recipe, model case), ...))`` at ``level``.

    full
        All 16 model cases of every architecture and the :data:`MIXED_STATE_CASES`; for cnn,
        20-step loss curves with the torch-rule and the trained Keras Adam and the torch-rule
        curve with the cosine schedule and gradient clipping; for the others the torch-rule
        curve; the torch-rule curve of 3 trainable probe modes (cnn gs=2).
    standard
        The 8 N=64 cases and N=128 gs=2 object_big probe_big of every architecture and the
        mixed-state cases; the 20-step torch-rule curves of cnn with constant rate and with
        cosine schedule + clipping, the constant-rate one of the others, and that of 3
        trainable probe modes.
    quick
        cnn N=64 gs=2 object_big probe_big only; no loss curve.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)} (got {level!r})")
    if level == "quick":
        return model_cases("cnn", "quick"), ()
    cases = model_cases("cnn", level)
    for architecture in OTHER_ARCHITECTURES:
        cases += model_cases(architecture, level)
    cases += MIXED_STATE_CASES
    cnn = ModelCase(gridsize=2)
    curves = (("torch_adam", 20, "adam", cnn),)
    if level == "full":
        curves += (("keras_adam", 20, "adam", cnn),)
    curves += (("torch_adam", 20, "cosine+clip", cnn),)
    curves += tuple(("torch_adam", 20, "adam", ModelCase(gridsize=2, architecture=a))
                    for a in OTHER_ARCHITECTURES)
    curves += (("torch_adam", 20, "probe_trainable", MIXED_STATE_CASES[-1]),)
    return cases, curves


def run_checks(level: str = "standard") -> list[CheckResult]:
    """The parity table: component checks, model checks and loss-curve checks (see :func:`plan`).

    A backend that cannot be imported yields rows with ``error`` and ``missing_backend`` set
    (the model and training checks need both backends); a check that raises yields one row
    with its error.
    """
    cases, curves = plan(level)
    usable, errors = available_backends()
    # each model check traces its own predict function: TensorFlow's retracing warning is noise
    tf_logger = logging.getLogger("tensorflow")
    level_before = tf_logger.level
    tf_logger.setLevel(max(level_before, logging.ERROR))
    try:
        return _run_checks(cases, curves, usable, errors)
    finally:
        tf_logger.setLevel(level_before)


def _run_checks(cases, curves, usable: list[str], errors: dict[str, str]) -> list[CheckResult]:
    rows: list[CheckResult] = []
    for backend, error in errors.items():
        rows.append(_unavailable("component", "component checks", backend, error))
    for check in COMPONENT_CHECKS if usable else ():
        rows += _guarded("component", check.__name__, check, usable)
    if errors:
        for backend, error in errors.items():
            rows.append(_unavailable("model", "model and training checks (need both backends)",
                                     backend, error))
        return rows
    for case in cases:
        rows += _guarded("model", case.label(), check_model, case)
    for optimizer, steps, recipe, case in curves:
        name = optimizer if recipe == "adam" else f"{optimizer}, {recipe}"
        if case.architecture != "cnn":
            name = f"{case.architecture}, {name}"
        if case.probe_modes > 1:
            name = f"{case.probe_modes} probe modes, {name}"
        rows += _guarded("training", f"loss curve ({name})", check_loss_curves, case, steps,
                         optimizer, recipe)
    return rows
