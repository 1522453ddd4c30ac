"""Backend-neutral train/validation split of grouped samples (shared by every backend)."""

from __future__ import annotations

import numpy as np


def split_indices(n_samples: int, validation_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split into (train, validation) sample indices; validation may be empty.

    Parameters
    ----------
    n_samples : int
        Number of grouped samples.
    validation_fraction : float
        Fraction of samples held out (rounded to the nearest integer count; at least one sample
        always stays in the training set, and a single sample is never split).
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same split.

    Returns
    -------
    train, validation : ndarray, int64, sorted
    """
    order = np.random.default_rng(seed).permutation(n_samples)
    n_val = round(float(n_samples * validation_fraction)) if n_samples > 1 else 0
    n_val = min(n_val, n_samples - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
