"""Differentiable forward model in TensorFlow, numerically equal to :mod:`ptycho.physics`.

Layout is channels-last: complex patches ``(B, N, N, C)``; relative offsets ``rel_xy``
``(B, C, 2)`` holding ``[x, y]`` in pixels (the legacy ``coords_relative`` of each member,
see :func:`offsets_to_rel`). Everything runs in float32 / complex64 and works in eager mode and
inside ``tf.function`` (canvas sizes may be data-dependent, so the ops are not meant for XLA).

Translation is a separable bilinear gather with zero fill, the convention of
:func:`ptycho.physics.translate`: ``out[r, c] = in[r - dy, c - dx]``.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from ptycho import physics

# ---------------------------------------------------------------------------------------------
# Layout helpers
# ---------------------------------------------------------------------------------------------

def offsets_to_rel(local_offsets) -> tf.Tensor:
    """Legacy offsets ``(B, 1, 2, C)`` -> per-member ``[x, y]`` shifts ``(B, C, 2)``.

    The dtype is kept (float32 or float64): bilinear weights are computed in it.
    """
    offsets = tf.convert_to_tensor(local_offsets)
    if not offsets.dtype.is_floating:
        offsets = tf.cast(offsets, tf.float32)
    return tf.transpose(offsets[:, 0], (0, 2, 1))


def _complex_to_parts(images: tf.Tensor) -> tf.Tensor:
    """Complex ``(..., H, W)`` -> real ``(..., H, W, 2)`` (real, imaginary)."""
    return tf.stack([tf.math.real(images), tf.math.imag(images)], axis=-1)


def _parts_to_complex(parts: tf.Tensor) -> tf.Tensor:
    return tf.complex(parts[..., 0], parts[..., 1])


def _channels_to_flat(patches: tf.Tensor) -> tf.Tensor:
    """``(B, N, N, C)`` -> ``(B*C, N, N)`` with flat index ``b*C + c``."""
    shape = tf.shape(patches)
    moved = tf.transpose(patches, (0, 3, 1, 2))
    return tf.reshape(moved, (shape[0] * shape[3], shape[1], shape[2]))


def _flat_to_channels(flat: tf.Tensor, channels) -> tf.Tensor:
    """``(B*C, H, W)`` -> ``(B, H, W, C)``."""
    shape = tf.shape(flat)
    grouped = tf.reshape(flat, (-1, channels, shape[1], shape[2]))
    return tf.transpose(grouped, (0, 2, 3, 1))


# ---------------------------------------------------------------------------------------------
# Bilinear translation
# ---------------------------------------------------------------------------------------------

def _sample_axis(images: tf.Tensor, shift: tf.Tensor, start, out_size, axis: int) -> tf.Tensor:
    """1-D linear resampling along ``axis`` (1 or 2) of real ``(K, H, W, P)`` images.

    ``out[k, i] = in[k, i + start - shift[k]]`` for ``i`` in ``range(out_size)``, linear between
    the two neighbouring samples, zero outside ``[0, length)``.
    """
    length = tf.shape(images)[axis]
    source = -shift                      # fractional source index of output 0 (minus start)
    floor = tf.floor(source)
    frac = tf.cast(source - floor, images.dtype)
    base = tf.cast(floor, tf.int32) + start
    index0 = tf.range(out_size)[None, :] + base[:, None]          # (K, out)
    if axis == 1:
        mask_shape, frac_shape = (-1, out_size, 1, 1), (-1, 1, 1, 1)
    else:
        mask_shape, frac_shape = (-1, 1, out_size, 1), (-1, 1, 1, 1)

    def take(index: tf.Tensor) -> tf.Tensor:
        inside = tf.cast((index >= 0) & (index < length), images.dtype)
        values = tf.gather(images, tf.clip_by_value(index, 0, length - 1), axis=axis,
                           batch_dims=1)
        return values * tf.reshape(inside, mask_shape)

    weight = tf.reshape(frac, frac_shape)
    return take(index0) * (1.0 - weight) + take(index0 + 1) * weight


def shift_sample(images: tf.Tensor, shifts_xy: tf.Tensor, start=0, out_size=None) -> tf.Tensor:
    """Bilinear shift with zero fill and an optional output window.

    ``out[k, r, c, p] = in[k, r + start - dy_k, c + start - dx_k, p]`` for ``r, c`` in
    ``range(out_size)`` (bilinear, zero outside the input). With ``start=0`` and
    ``out_size=H`` this is :func:`ptycho.physics.translate`.

    Parameters
    ----------
    images : Tensor, shape (K, H, H, P), float32
    shifts_xy : Tensor, shape (K, 2), float32 or float64, ``[dx, dy]`` pixels
    start : int or scalar int32 Tensor
    out_size : int or scalar int32 Tensor, default H

    Returns
    -------
    Tensor, shape (K, out_size, out_size, P), float32
    """
    if out_size is None:
        out_size = tf.shape(images)[1]
    shifts_xy = tf.stop_gradient(shifts_xy)
    rows = _sample_axis(images, shifts_xy[:, 1], start, out_size, axis=1)
    return _sample_axis(rows, shifts_xy[:, 0], start, out_size, axis=2)


def translate(images: tf.Tensor, shifts_xy: tf.Tensor) -> tf.Tensor:
    """Move each image's content by ``(dx, dy)`` pixels; bilinear, zero fill.

    ``out[b, r, c] = images[b, r - dy, c - dx]`` (as :func:`ptycho.physics.translate`).

    Parameters
    ----------
    images : Tensor, shape (B, H, W), float32 or complex64
    shifts_xy : Tensor, shape (B, 2), float, ``[dx, dy]`` pixels

    Returns
    -------
    Tensor, shape (B, H, W), dtype of ``images``
    """
    images = tf.convert_to_tensor(images)
    shifts_xy = tf.convert_to_tensor(shifts_xy)
    if images.dtype.is_complex:
        moved = _shift_hw(_complex_to_parts(images), shifts_xy)
        return _parts_to_complex(moved)
    return _shift_hw(images[..., None], shifts_xy)[..., 0]


def _shift_hw(parts: tf.Tensor, shifts_xy: tf.Tensor) -> tf.Tensor:
    """Translate ``(B, H, W, P)`` (height and width may differ)."""
    shifts_xy = tf.stop_gradient(shifts_xy)
    rows = _sample_axis(parts, shifts_xy[:, 1], 0, tf.shape(parts)[1], axis=1)
    return _sample_axis(rows, shifts_xy[:, 0], 0, tf.shape(parts)[2], axis=2)


# ---------------------------------------------------------------------------------------------
# Object-big merge and re-extraction
# ---------------------------------------------------------------------------------------------

def merge_padding_px(rel_xy: tf.Tensor) -> tf.Tensor:
    """Canvas margin ``ceil(max |rel|) + 1`` (as :func:`ptycho.physics.merge_padding_px`).

    Returns a scalar int32 Tensor (data-dependent).
    """
    largest = tf.reduce_max(tf.abs(tf.cast(rel_xy, tf.float64)))
    return tf.cast(tf.math.ceil(largest), tf.int32) + 1


def merge_canvas(patches: tf.Tensor, rel_xy: tf.Tensor, weight_patch: tf.Tensor,
                 pad) -> tf.Tensor:
    """Merge the C patches of each sample on its own canvas of side N + 2*pad.

    Patch c is shifted by ``-rel_c`` (to its true position relative to the group mean); the
    canvas is the shifted sum divided by ``max(shifted sum of weight_patch, 1)``.

    Parameters
    ----------
    patches : Tensor, shape (B, N, N, C), complex64
    rel_xy : Tensor, shape (B, C, 2), float
    weight_patch : Tensor, shape (N, N), float32 (the central box or ones)
    pad : int or scalar int32 Tensor

    Returns
    -------
    Tensor, shape (B, N + 2 pad, N + 2 pad), complex64
    """
    n = tf.shape(patches)[1]
    channels = tf.shape(patches)[3]
    size = n + 2 * pad
    flat = _channels_to_flat(patches)                                   # (B*C, N, N)
    weights = tf.broadcast_to(tf.cast(weight_patch, tf.float32), tf.shape(flat))
    parts = tf.stack([tf.math.real(flat), tf.math.imag(flat), weights], axis=-1)
    flat_shift = -tf.reshape(rel_xy, (-1, 2))
    moved = shift_sample(parts, flat_shift, start=-pad, out_size=size)  # (B*C, S, S, 3)
    summed = tf.reduce_sum(tf.reshape(moved, (-1, channels, size, size, 3)), axis=1)
    denominator = tf.maximum(summed[..., 2], 1.0)
    return tf.complex(summed[..., 0] / denominator, summed[..., 1] / denominator)


def extract_from_canvas(canvas: tf.Tensor, rel_xy: tf.Tensor, n) -> tf.Tensor:
    """Read the N x N patch of each member from its sample's canvas (shift by +rel, crop).

    canvas (B, S, S) complex64, rel_xy (B, C, 2) -> (B, N, N, C) complex64.
    """
    channels = tf.shape(rel_xy)[1]
    start = (tf.shape(canvas)[1] - n) // 2
    parts = tf.repeat(_complex_to_parts(canvas), channels, axis=0)     # (B*C, S, S, 2)
    moved = shift_sample(parts, tf.reshape(rel_xy, (-1, 2)), start=start, out_size=n)
    return _flat_to_channels(_parts_to_complex(moved), channels)


def _crop_centre(images: tf.Tensor, n) -> tf.Tensor:
    """Central n x n crop of ``(B, S, S)``."""
    start = (tf.shape(images)[1] - n) // 2
    return images[:, start:start + n, start:start + n]


def merge_and_extract(patches: tf.Tensor, rel_xy: tf.Tensor, pad_object: bool
                      ) -> tuple[tf.Tensor, tf.Tensor]:
    """Object-big overlap constraint (as :func:`ptycho.physics.merge_and_extract`).

    Every sample is merged on its own canvas, whatever the batch size.

    Parameters
    ----------
    patches : Tensor, shape (B, N, N, C), complex64
    rel_xy : Tensor, shape (B, C, 2), float
    pad_object : bool
        Coverage counts the central N/2 box of each patch (True) or the whole patch.

    Returns
    -------
    extracted : Tensor, shape (B, N, N, C), complex64
        The re-extracted member patches.
    centre : Tensor, shape (B, N, N, 1), complex64
        The canvas crop centred on the group mean (the inference output).
    """
    n = int(patches.shape[1])
    weight = physics.centre_mask(n) if pad_object else np.ones((n, n))
    pad = merge_padding_px(rel_xy)
    canvas = merge_canvas(patches, rel_xy, tf.constant(weight, tf.float32), pad)
    return extract_from_canvas(canvas, rel_xy, n), _crop_centre(canvas, n)[..., None]


def shift_single_patch(obj: tf.Tensor, rel_xy: tf.Tensor) -> tf.Tensor:
    """Member patches from one group-centred patch (object_big off): shift by +rel, zero fill.

    Equal to padding by :func:`merge_padding_px`, translating and cropping the centre (the
    padding is zeros, and zero fill gives the same samples).

    obj (B, N, N, 1) complex64, rel_xy (B, C, 2) -> (B, N, N, C) complex64.
    """
    channels = tf.shape(rel_xy)[1]
    parts = tf.repeat(_complex_to_parts(obj[..., 0]), channels, axis=0)   # (B*C, N, N, 2)
    moved = shift_sample(parts, tf.reshape(rel_xy, (-1, 2)))
    return _flat_to_channels(_parts_to_complex(moved), channels)


# ---------------------------------------------------------------------------------------------
# Illumination, far field, noise model
# ---------------------------------------------------------------------------------------------

def far_field_amplitude(psi: tf.Tensor) -> tf.Tensor:
    """``|fftshift(fft2(psi))| / N`` over the two spatial axes (as :mod:`ptycho.physics`).

    Parameters
    ----------
    psi : Tensor, shape (B, N, N, C), complex64 (exit waves, channels-last)

    Returns
    -------
    Tensor, shape (B, N, N, C), float32 (amplitude; squared it is in expected photon counts
    when ``psi`` is scaled accordingly; DC at ``(N/2, N/2)``)
    """
    n = tf.cast(tf.shape(psi)[1], tf.float32)
    spectrum = tf.signal.fft2d(tf.transpose(psi, (0, 3, 1, 2)))
    spectrum = tf.signal.fftshift(spectrum, axes=(-2, -1))
    return tf.transpose(tf.abs(spectrum), (0, 2, 3, 1)) / n


def mixed_state_amplitude(psi: tf.Tensor) -> tf.Tensor:
    """``sqrt(sum_k |fftshift(fft2(psi_k))|**2) / N``, the modes ``k`` along axis 1.

    The amplitude of the incoherent sum :func:`ptycho.physics.mixed_state_intensity`:
    ``psi`` (B, M, N, N, C) complex64 or complex128 (each mode's exit waves, channels-last)
    -> (B, N, N, C) real of the same precision. The square root has a zero gradient where
    the intensity is 0 (instead of NaN).
    """
    real_dtype = psi.dtype.real_dtype
    n = tf.cast(tf.shape(psi)[2], real_dtype)
    spectrum = tf.signal.fft2d(tf.transpose(psi, (0, 1, 4, 2, 3)))        # (B, M, C, N, N)
    intensity = tf.reduce_sum(tf.math.real(spectrum) ** 2 + tf.math.imag(spectrum) ** 2, axis=1)
    lit = intensity > 0
    amplitude = tf.where(lit, tf.sqrt(tf.where(lit, intensity, tf.ones_like(intensity))),
                         tf.zeros_like(intensity))
    amplitude = tf.signal.fftshift(amplitude, axes=(-2, -1))
    return tf.transpose(amplitude, (0, 2, 3, 1)) / n


def smooth_field(field: tf.Tensor, sigma: float) -> tf.Tensor:
    """Separable 3x3 smoothing of real and imaginary parts, reflect padding.

    As :func:`ptycho.physics.smooth_field` (kernel :func:`ptycho.physics.gaussian_kernel_1d`,
    ``mode='mirror'``), over axes 1 and 2 of a channels-last ``(B, N, N, C)`` complex64 field.
    """
    k0, k1, k2 = (float(w) for w in physics.gaussian_kernel_1d(sigma))

    def _smooth(part: tf.Tensor) -> tf.Tensor:
        n_rows, n_cols = tf.shape(part)[1], tf.shape(part)[2]
        padded = tf.pad(part, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
        cols = (k0 * padded[:, :, 0:n_cols] + k1 * padded[:, :, 1:n_cols + 1]
                + k2 * padded[:, :, 2:n_cols + 2])
        return (k0 * cols[:, 0:n_rows] + k1 * cols[:, 1:n_rows + 1]
                + k2 * cols[:, 2:n_rows + 2])

    return tf.complex(_smooth(tf.math.real(field)), _smooth(tf.math.imag(field)))


def masked_mean(values: tf.Tensor, valid: tf.Tensor | None = None) -> tf.Tensor:
    """Mean over the valid entries, ``sum(values[valid]) / max(count(valid), 1)``
    (as :func:`ptycho.physics.masked_mean`); ``reduce_mean`` when ``valid`` is None.

    ``valid`` (bool, the shape of ``values``): masked entries add nothing to the value nor to
    the gradient, whatever they hold.
    """
    if valid is None:
        return tf.reduce_mean(values)
    total = tf.reduce_sum(tf.where(valid, values, tf.zeros_like(values)))
    count = tf.cast(tf.math.count_nonzero(valid), values.dtype)
    return total / tf.maximum(count, tf.ones((), values.dtype))


def poisson_nll(pred_intensity: tf.Tensor, counts: tf.Tensor,
                eps: float = physics.POISSON_EPS, valid: tf.Tensor | None = None) -> tf.Tensor:
    """Mean of ``pred - counts * log(pred + eps)`` (as :func:`ptycho.physics.poisson_nll`).

    Both arguments in expected / measured photon counts, any equal shapes; returns a scalar.
    ``valid`` (bool, same shape): the mean runs over the valid pixels only (:func:`masked_mean`).
    """
    return masked_mean(pred_intensity - counts * tf.math.log(pred_intensity + eps), valid)


# ---------------------------------------------------------------------------------------------
# Layers holding the physics weights
# ---------------------------------------------------------------------------------------------

class IntensityScaler(keras.layers.Layer):
    """Holds ``log_scale`` = log(s) as a tracked Keras weight; it trains when ``scale_trainable``.

    :meth:`scale` returns s (float32 scalar). The network input ``s * X`` is divided by it and
    the predicted amplitude multiplied by it. Torch counterpart: ``scaler.log_scale``.
    """

    def __init__(self, intensity_scale: float, scale_trainable: bool, **kwargs):
        super().__init__(**kwargs)
        self.log_scale = self.add_weight(
            name="log_scale", shape=(), dtype="float32", trainable=bool(scale_trainable),
            initializer=keras.initializers.Constant(math.log(float(intensity_scale))))
        self.built = True

    def scale(self) -> tf.Tensor:
        return tf.exp(tf.convert_to_tensor(self.log_scale))

    def call(self, inputs):
        return inputs * self.scale()


class ProbeIllumination(keras.layers.Layer):
    """Exit wave ``probe * patch`` with optional smoothing and disk mask; the probe may train.

    The complex probe is stored as one real ``(2, N, N)`` Keras weight ``probe_ri``
    (real, imaginary), like the torch ``illumination.probe_ri``; a mixed-state probe of M
    modes as ``(2, M, N, N)``. The mask (:func:`ptycho.physics.probe_mask`) is a constant,
    not a weight.

    ``call(patches (B, N, N, C) complex64) -> (B, N, N, C) complex64``; mixed state: the exit
    waves of every mode, (B, M, N, N, C), for :func:`mixed_state_amplitude`.
    """

    def __init__(self, probe: np.ndarray, probe_trainable: bool, mask: bool,
                 smoothing_sigma: float, **kwargs):
        super().__init__(**kwargs)
        probe = np.asarray(probe, np.complex64)
        n = probe.shape[-1]
        self.probe_ri = self.add_weight(name="probe_ri", shape=(2,) + probe.shape,
                                        dtype="float32", initializer="zeros",
                                        trainable=bool(probe_trainable))
        self.probe_ri.assign(np.stack([probe.real, probe.imag]).astype(np.float32))
        self._mask = tf.constant(physics.probe_mask(n)[:, :, None], tf.float32)
        self.use_mask = bool(mask)
        self.smoothing_sigma = float(smoothing_sigma)
        self.mixed_state = probe.ndim == 3
        self.built = True

    def probe(self) -> tf.Tensor:
        """The complex probe, (N, N), or (M, N, N) modes, complex64."""
        ri = tf.convert_to_tensor(self.probe_ri)
        return tf.complex(ri[0], ri[1])

    def call(self, patches, probe=None):
        """``probe`` (B, N, N, 1) complex64 ((B, M, N, N, 1) modes): one per sample (each
        sample's training scan) instead of this layer's own probe."""
        if self.mixed_state:
            own = self.probe()[None, :, :, :, None]                       # (1, M, N, N, 1)
            field = patches[:, None] * (own if probe is None else probe)
        else:
            field = patches * (self.probe()[:, :, None] if probe is None else probe)
        if self.smoothing_sigma > 0 and self.mixed_state:   # smooth each mode's (N, N, C)
            shape = tf.shape(field)
            flat = tf.reshape(field, tf.concat([[-1], shape[2:]], axis=0))
            field = tf.reshape(smooth_field(flat, self.smoothing_sigma), shape)
        elif self.smoothing_sigma > 0:
            field = smooth_field(field, self.smoothing_sigma)
        if self.use_mask:
            field = field * tf.cast(self._mask, field.dtype)
        return field
