"""PyTorch forward-model operations against the NumPy reference (ptycho.physics)."""

import numpy as np
import pytest
import torch

from ptycho import physics
from ptycho.backends.pytorch import forward_model as fm


def _complex(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _rel_err(actual, expected):
    return np.abs(actual - expected).max() / np.abs(expected).max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_translate_matches_reference(rng, dtype):
    images = _complex(rng, (4, 16, 16))
    shifts = rng.uniform(-3.5, 3.5, (4, 2))
    ctype = torch.complex64 if dtype == torch.float32 else torch.complex128
    out = fm.translate(torch.tensor(images, dtype=ctype), torch.tensor(shifts, dtype=dtype)).numpy()
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert _rel_err(out, physics.translate(images, shifts)) < tol


@pytest.mark.parametrize("pad_object", [True, False])
def test_merge_and_extract_matches_reference(rng, pad_object):
    patches = _complex(rng, (3, 4, 16, 16))
    rel = rng.uniform(-3, 3, (3, 4, 2))
    members, centre = fm.merge_and_extract(torch.tensor(patches, dtype=torch.complex64),
                                           torch.tensor(rel, dtype=torch.float32), pad_object)
    expected = physics.merge_and_extract(patches, rel, pad_object)
    assert _rel_err(members.numpy(), expected) < 1e-5
    assert centre.shape == (3, 1, 16, 16)


def test_merge_gives_each_sample_its_own_canvas(rng):
    """Batch size must not change the result (upstream merged all samples for B*C >= 64)."""
    patches = torch.tensor(_complex(rng, (40, 4, 16, 16)), dtype=torch.complex64)
    rel = torch.tensor(rng.uniform(-2, 2, (40, 4, 2)), dtype=torch.float32)
    whole, _ = fm.merge_and_extract(patches, rel, True)
    first, _ = fm.merge_and_extract(patches[:1], rel[:1], True)
    assert whole.shape == (40, 4, 16, 16)
    assert torch.allclose(whole[:1], first, atol=1e-5)


def test_far_field_and_smoothing_match_reference(rng):
    psi = _complex(rng, (2, 3, 16, 16))
    tensor = torch.tensor(psi, dtype=torch.complex64)
    assert _rel_err(fm.far_field_amplitude(tensor).numpy(), physics.far_field_amplitude(psi)) < 1e-5
    assert _rel_err(fm.smooth_field(tensor, 0.8).numpy(), physics.smooth_field(psi, 0.8)) < 1e-5


def test_illumination_with_mask_and_smoothing(rng):
    probe = _complex(rng, (16, 16))
    patches = _complex(rng, (2, 1, 16, 16))
    layer = fm.ProbeIllumination(probe, trainable=False, mask=True, smoothing_sigma=0.7)
    out = layer(torch.tensor(patches, dtype=torch.complex64)).detach().numpy()
    expected = physics.illuminate(patches, probe, mask=True, smoothing_sigma=0.7)
    assert _rel_err(out, expected) < 1e-5


def test_poisson_nll_matches_reference(rng):
    pred = rng.uniform(0.1, 50, (4, 16, 16))
    counts = rng.poisson(pred).astype(float)
    value = fm.poisson_nll(torch.tensor(pred), torch.tensor(counts)).item()
    assert value == pytest.approx(physics.poisson_nll(pred, counts), rel=1e-12)
