"""Legacy ``ptycho.probe`` facade (no TensorFlow despite the upstream history).

ptychodus calls ``set_probe_guess(None, probeGuess)`` for its side effect: the probe is
recorded in the legacy mirror ``ptycho.params.cfg['probe']`` (layout ``(N, N, 1)``, complex64).
Nothing in the core reads it; models use the probe stored in their archive.
"""

from __future__ import annotations

import numpy as np

from ptycho import params, physics

__all__ = ["get_default_probe", "get_probe_guess", "normalize_probe", "set_probe_guess"]


def set_probe_guess(X_train=None, probe_guess=None) -> np.ndarray:
    """Record the probe guess in ``params.cfg['probe']`` and return it as (N, N, 1) complex64.

    Parameters
    ----------
    X_train : array_like (b, N, N, C), optional
        Only used for N when ``probe_guess`` is None.
    probe_guess : array_like (N, N), (N, N, 1) or (modes, N, N), optional
        Mode 0 is used. None: the default probe (:func:`ptycho.physics.default_probe`).
    """
    from ptycho.raw_data import _probe_mode0

    if probe_guess is None:
        n = int(np.shape(X_train)[1]) if X_train is not None else int(params.get("N", 64))
        probe = physics.default_probe(n).astype(np.complex64)
    else:
        probe = _probe_mode0(probe_guess)
    probe = probe[..., None]
    params.set("probe", probe)
    return probe


def get_probe_guess() -> np.ndarray | None:
    """The probe recorded by :func:`set_probe_guess`, (N, N, 1), or None."""
    return params.get("probe", None)


def get_default_probe(N: int) -> np.ndarray:
    """The package's default probe (:func:`ptycho.physics.default_probe`), (N, N) complex64."""
    return physics.default_probe(int(N)).astype(np.complex64)


def normalize_probe(probe, probe_scale: float = 4.0) -> np.ndarray:
    """:func:`ptycho.physics.normalize_probe` of mode 0 of ``probe``, (N, N) complex64."""
    from ptycho.raw_data import _probe_mode0

    return physics.normalize_probe(_probe_mode0(probe), probe_scale).astype(np.complex64)
