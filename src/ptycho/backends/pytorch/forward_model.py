"""Differentiable forward model in PyTorch, numerically equal to :mod:`ptycho.physics`.

Layout is channels-first: complex patches ``(B, C, N, N)``; relative offsets ``(B, C, 2)``
holding ``[x, y]`` in pixels (the legacy ``coords_relative``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ptycho import physics


def translate(images: torch.Tensor, shifts_xy: torch.Tensor) -> torch.Tensor:
    """Move each image's content by ``(dx, dy)`` pixels; bilinear, zero fill.

    ``out[b, r, c] = images[b, r - dy, c - dx]`` (as :func:`ptycho.physics.translate`).

    Parameters
    ----------
    images : Tensor, shape (B, H, W), real or complex
    shifts_xy : Tensor, shape (B, 2), real, ``[dx, dy]``
    """
    if images.is_complex():
        parts = torch.stack([images.real, images.imag], dim=1)
        moved = _translate_real(parts, shifts_xy)
        return torch.complex(moved[:, 0], moved[:, 1])
    return _translate_real(images[:, None], shifts_xy)[:, 0]


def _translate_real(images: torch.Tensor, shifts_xy: torch.Tensor) -> torch.Tensor:
    """Bilinear translation of real ``(B, K, H, W)`` images by ``(B, 2)`` shifts.

    Sampled in float64 (except on MPS): grid_sample's normalised coordinates lose about
    1e-7 * W pixels in float32, a relative error above 1e-5 on 140-pixel canvases.
    """
    _, _, height, width = images.shape
    dtype = images.dtype if images.device.type == "mps" else torch.float64
    rows = torch.arange(height, dtype=dtype, device=images.device)
    cols = torch.arange(width, dtype=dtype, device=images.device)
    shifts = shifts_xy.to(dtype)
    src_rows = rows[None, :, None] - shifts[:, 1, None, None]
    src_cols = cols[None, None, :] - shifts[:, 0, None, None]
    # grid_sample with align_corners=True maps -1..1 onto pixel centres 0..W-1.
    grid_x = 2.0 * src_cols / max(width - 1, 1) - 1.0
    grid_y = 2.0 * src_rows / max(height - 1, 1) - 1.0
    grid = torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1)
    moved = F.grid_sample(images.to(dtype), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=True)
    return moved.to(images.dtype)


def _pad_centre(images: torch.Tensor, pad: int) -> torch.Tensor:
    return F.pad(images, (pad, pad, pad, pad)) if pad else images


def _crop_centre(images: torch.Tensor, size: int) -> torch.Tensor:
    start = (images.shape[-1] - size) // 2
    return images[..., start:start + size, start:start + size]


def merge_canvas(patches: torch.Tensor, rel_xy: torch.Tensor, weight_patch: torch.Tensor,
                 pad: int) -> torch.Tensor:
    """Merge the C patches of each sample on a canvas of side N + 2*pad centred on the group.

    Parameters
    ----------
    patches : Tensor, shape (B, C, N, N), complex
    rel_xy : Tensor, shape (B, C, 2), real
    weight_patch : Tensor, shape (N, N), real (central box or ones)
    pad : int

    Returns
    -------
    Tensor, shape (B, N + 2 pad, N + 2 pad), complex
    """
    batch, channels, n, _ = patches.shape
    size = n + 2 * pad
    flat_shift = -rel_xy.reshape(batch * channels, 2)
    moved = translate(_pad_centre(patches.reshape(batch * channels, n, n), pad), flat_shift)
    weights = _pad_centre(weight_patch.to(rel_xy.dtype).expand(batch * channels, n, n), pad)
    moved_weights = translate(weights, flat_shift)
    numerator = moved.reshape(batch, channels, size, size).sum(dim=1)
    weight = moved_weights.reshape(batch, channels, size, size).sum(dim=1)
    return numerator / torch.clamp(weight, min=1.0)


def extract_from_canvas(canvas: torch.Tensor, rel_xy: torch.Tensor, n: int) -> torch.Tensor:
    """Read the N x N patch of each member from its sample's canvas (shift by +rel, crop).

    canvas (B, S, S) complex, rel_xy (B, C, 2) -> (B, C, N, N) complex.
    """
    batch, channels, _ = rel_xy.shape
    size = canvas.shape[-1]
    repeated = canvas[:, None].expand(batch, channels, size, size).reshape(batch * channels, size, size)
    moved = translate(repeated, rel_xy.reshape(batch * channels, 2))
    return _crop_centre(moved, n).reshape(batch, channels, n, n)


def merge_padding_px(rel_xy: torch.Tensor) -> int:
    """Canvas margin as :func:`ptycho.physics.merge_padding_px` (a Python int)."""
    largest = float(rel_xy.detach().abs().max()) if rel_xy.numel() else 0.0
    return int(math.ceil(largest)) + 1


def merge_and_extract(patches: torch.Tensor, rel_xy: torch.Tensor, pad_object: bool) -> tuple:
    """Object-big overlap constraint (as :func:`ptycho.physics.merge_and_extract`).

    Returns ``(extracted (B, C, N, N), centre (B, 1, N, N))``: the re-extracted member patches
    and the canvas crop centred on the group mean (the inference output).
    """
    n = patches.shape[-1]
    pad = merge_padding_px(rel_xy)
    weight_patch = torch.as_tensor(
        physics.centre_mask(n) if pad_object else np.ones((n, n)), device=patches.device
    )
    canvas = merge_canvas(patches, rel_xy, weight_patch, pad)
    return extract_from_canvas(canvas, rel_xy, n), _crop_centre(canvas, n)[:, None]


def shift_single_patch(obj: torch.Tensor, rel_xy: torch.Tensor) -> torch.Tensor:
    """Member patches from one group-centred patch (object_big off): shift by +rel, zero fill.

    obj (B, 1, N, N) complex, rel_xy (B, C, 2) -> (B, C, N, N).
    """
    batch, channels, _ = rel_xy.shape
    n = obj.shape[-1]
    pad = merge_padding_px(rel_xy)
    padded = _pad_centre(obj[:, 0], pad)
    size = padded.shape[-1]
    repeated = padded[:, None].expand(batch, channels, size, size).reshape(batch * channels, size, size)
    moved = translate(repeated, rel_xy.reshape(batch * channels, 2))
    return _crop_centre(moved, n).reshape(batch, channels, n, n)


def far_field_amplitude(psi: torch.Tensor) -> torch.Tensor:
    """``|fftshift(fft2(psi))| / N`` over the last two axes (as :mod:`ptycho.physics`)."""
    n = psi.shape[-1]
    spectrum = torch.fft.fftshift(torch.fft.fft2(psi), dim=(-2, -1))
    return torch.abs(spectrum) / n


def mixed_state_amplitude(psi: torch.Tensor) -> torch.Tensor:
    """``sqrt(sum_k |fftshift(fft2(psi_k))|**2) / N``, the modes ``k`` along dim 1.

    The amplitude of the incoherent sum :func:`ptycho.physics.mixed_state_intensity`:
    ``psi`` (B, M, C, N, N) complex (each mode's exit waves) -> (B, C, N, N) real. The square
    root has a zero gradient where the intensity is 0 (instead of NaN).
    """
    n = psi.shape[-1]
    spectrum = torch.fft.fft2(psi)
    intensity = (spectrum.real ** 2 + spectrum.imag ** 2).sum(dim=1)
    lit = intensity > 0
    amplitude = torch.where(lit, torch.sqrt(torch.where(lit, intensity,
                                                        torch.ones_like(intensity))),
                            torch.zeros_like(intensity))
    return torch.fft.fftshift(amplitude, dim=(-2, -1)) / n


def smooth_field(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable 3x3 smoothing of real and imaginary parts, reflect padding (physics.smooth_field)."""
    kernel = torch.as_tensor(physics.gaussian_kernel_1d(sigma), dtype=field.real.dtype,
                             device=field.device)
    shape = field.shape
    parts = torch.stack([field.real, field.imag], dim=-3).reshape(-1, 1, shape[-2], shape[-1])
    parts = F.pad(parts, (1, 1, 1, 1), mode="reflect")
    parts = F.conv2d(parts, kernel.reshape(1, 1, 1, 3))
    parts = F.conv2d(parts, kernel.reshape(1, 1, 3, 1))
    parts = parts.reshape(*shape[:-2], 2, shape[-2], shape[-1])
    return torch.complex(parts[..., 0, :, :], parts[..., 1, :, :])


def masked_mean(values: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the valid entries, ``sum(values[valid]) / max(count(valid), 1)``
    (as :func:`ptycho.physics.masked_mean`); ``torch.mean`` when ``valid`` is None.

    ``valid`` (bool, the shape of ``values``): masked entries add nothing to the value nor to
    the gradient, whatever they hold.
    """
    if valid is None:
        return torch.mean(values)
    total = torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return total.sum() / valid.sum().clamp(min=1).to(values.dtype)


def poisson_nll(pred_intensity: torch.Tensor, counts: torch.Tensor,
                eps: float = physics.POISSON_EPS, valid: torch.Tensor | None = None
                ) -> torch.Tensor:
    """Mean of ``pred - counts * log(pred + eps)`` over the valid pixels (all without ``valid``)
    (as :func:`ptycho.physics.poisson_nll`; ``valid`` bool, the shape of ``counts``)."""
    return masked_mean(pred_intensity - counts * torch.log(pred_intensity + eps), valid)


class IntensityScaler(nn.Module):
    """Holds ``log_scale`` = log(s); trains when ``trainable``.

    ``scale()`` returns s. The network input ``s * X`` is divided by it and the predicted
    amplitude multiplied by it.
    """

    def __init__(self, intensity_scale: float, trainable: bool):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(intensity_scale), dtype=torch.float32),
                                      requires_grad=trainable)

    def scale(self) -> torch.Tensor:
        return torch.exp(self.log_scale)


class ProbeIllumination(nn.Module):
    """Exit wave ``probe * patch`` with optional smoothing and disk mask; the probe may train.

    The complex probe is stored as a real ``(2, N, N)`` parameter (real, imaginary), a
    mixed-state probe of M modes as ``(2, M, N, N)``.
    """

    def __init__(self, probe: np.ndarray, trainable: bool, mask: bool, smoothing_sigma: float):
        super().__init__()
        probe = np.asarray(probe, np.complex64)
        self.probe_ri = nn.Parameter(torch.as_tensor(np.stack([probe.real, probe.imag])),
                                     requires_grad=trainable)
        self.register_buffer("mask", torch.as_tensor(physics.probe_mask(probe.shape[-1]),
                                                     dtype=torch.float32))
        self.use_mask = mask
        self.smoothing_sigma = float(smoothing_sigma)
        self.mixed_state = probe.ndim == 3

    def probe(self) -> torch.Tensor:
        """The complex probe, (N, N), or (M, N, N) modes."""
        return torch.complex(self.probe_ri[0], self.probe_ri[1])

    def forward(self, patches: torch.Tensor, probe: torch.Tensor | None = None) -> torch.Tensor:
        """``patches`` (B, C, N, N) complex; ``probe`` (B, 1, N, N) complex, one per sample
        (each sample's training scan), instead of this layer's own (N, N) probe.

        Mixed state: the exit waves of every mode, (B, M, C, N, N), for
        :func:`mixed_state_amplitude`; a per-sample ``probe`` is then (B, M, 1, N, N).
        """
        if self.mixed_state:
            own = self.probe()[:, None]                                   # (M, 1, N, N)
            field = patches[:, None] * (own if probe is None else probe)
        else:
            field = patches * (self.probe() if probe is None else probe)
        if self.smoothing_sigma > 0:
            field = smooth_field(field, self.smoothing_sigma)
        if self.use_mask:
            field = field * self.mask
        return field
