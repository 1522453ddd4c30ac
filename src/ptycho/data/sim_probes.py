"""Probes for simulated scans: the package's default disk probe and a defocused, ringed probe.

Both are centred between pixels ``N/2 - 1`` and ``N/2`` (like :func:`ptycho.physics.probe_mask`)
and carry the same total power ``sum |P|**2`` as :func:`ptycho.physics.default_probe` of the same
size, so that switching the probe changes the illumination's shape, not its brightness. (The
simulator rescales the diffraction to ``nphotons`` anyway; the probe scale only matters for the
``probeGuess`` stored with the scan.)
"""

from __future__ import annotations

import math

import numpy as np

from ptycho.errors import InputError

PROBE_KINDS = ("default", "defocused")

#: Radius of the defocused probe's pinhole, as a fraction of N (matches the default probe).
DEFOCUSED_RADIUS_FRACTION = 1.0 / 6.0
#: Fresnel number ``a**2 / (lambda z)`` of the pinhole-to-sample propagation. At 3 the beam has
#: a bright central lobe, a dark ring and a bright outer ring (Fresnel rings) and a phase that
#: varies by about 2.5 rad across it, with < 0.5% of the power beyond radius N/3.
DEFOCUSED_FRESNEL_NUMBER = 3.0


def _check_n(N: int, where: str = "N") -> int:
    if isinstance(N, bool) or int(N) != N or N < 8 or int(N) % 2:
        raise InputError("invalid size", where, "an even number of pixels >= 8", repr(N))
    return int(N)


def defocused_probe(N: int, radius: float | None = None,
                    fresnel_number: float = DEFOCUSED_FRESNEL_NUMBER) -> np.ndarray:
    """A pinhole's Fresnel-propagated (defocused) wave field: complex, with rings.

    A disk aperture of ``radius`` pixels (anti-aliased edge, centred at ``((N-1)/2, (N-1)/2)``)
    is propagated with the paraxial (Fresnel) transfer function
    ``H(f) = exp(-i pi lambda z |f|**2)`` applied in Fourier space, with
    ``lambda z = radius**2 / fresnel_number`` and ``f`` in cycles per pixel. The result shows
    Fresnel rings in amplitude and a non-trivial, radially varying phase. It is scaled to the
    total power of :func:`ptycho.physics.default_probe`.

    Parameters
    ----------
    N : int
        Probe size in pixels (even, >= 8).
    radius : float, optional
        Pinhole radius in pixels; default ``N / 6``.
    fresnel_number : float, > 0
        Fresnel number of the propagation; smaller means stronger defocus (wider, smoother
        beam), larger means closer to the sharp pinhole.

    Returns
    -------
    ndarray, shape (N, N), complex128
    """
    from ptycho.physics import default_probe

    N = _check_n(N)
    radius = N * DEFOCUSED_RADIUS_FRACTION if radius is None else float(radius)
    if not radius > 0 or not fresnel_number > 0:
        raise InputError("invalid value", "defocused_probe", "radius > 0 and fresnel_number > 0",
                         f"radius={radius}, fresnel_number={fresnel_number}")
    axis = np.arange(N, dtype=np.float64) - (N - 1) / 2
    distance = np.hypot(axis[:, None], axis[None, :])
    aperture = np.clip(radius + 0.5 - distance, 0.0, 1.0)
    freq = np.fft.fftfreq(N)
    freq2 = freq[:, None] ** 2 + freq[None, :] ** 2
    lambda_z = radius ** 2 / fresnel_number
    transfer = np.exp(-1j * math.pi * lambda_z * freq2)
    field = np.fft.ifft2(np.fft.fft2(aperture) * transfer)
    target_power = float(np.sum(np.abs(default_probe(N)) ** 2))
    field *= math.sqrt(target_power / float(np.sum(np.abs(field) ** 2)))
    return field.astype(np.complex128)


def make_probe(kind: str = "default", N: int = 64) -> np.ndarray:
    """Build a probe by name.

    Parameters
    ----------
    kind : {'default', 'defocused'}
        ``'default'``: :func:`ptycho.physics.default_probe` (real, smooth disk of radius ~N/6,
        zero phase). ``'defocused'``: :func:`defocused_probe` (complex, ringed).
    N : int
        Probe size in pixels (even, >= 8).

    Returns
    -------
    ndarray, shape (N, N), complex128
        Illumination amplitude in arbitrary units (power ``sum |P|**2`` equal for both kinds).

    Raises
    ------
    ptycho.errors.InputError
        Unknown kind or invalid N.
    """
    N = _check_n(N)
    if kind == "default":
        from ptycho.physics import default_probe

        return np.asarray(default_probe(N), np.complex128)
    if kind == "defocused":
        return defocused_probe(N)
    raise InputError("unknown probe kind", "--probe", " or ".join(PROBE_KINDS), repr(kind))
