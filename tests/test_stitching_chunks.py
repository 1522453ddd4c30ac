"""Chunked stitching (Stitcher) and chunked inference equal the one-shot results exactly."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho.config.config import ModelConfig
from ptycho.data.scan import Scan
from ptycho.stitching import Stitcher, stitch_patches
from ptycho.workflows.inference import reconstruct


class StandInModel:
    """A network-free model with the TrainedModel predict API (``ptycho.backends.base``)."""

    backend = "stand-in"

    def __init__(self, N: int, gridsize: int = 1):
        self.model_config = ModelConfig(N=N, gridsize=gridsize)
        self.intensity_scale = 3.0
        self.probe = np.ones((N, N), np.complex64)
        self.history: dict = {}
        self.calls: list[int] = []

    def predict(self, inputs, batch_size: int = 256, central_px=None) -> np.ndarray:
        x, offsets = inputs
        self.calls.append(len(x))
        amplitude = x.mean(axis=-1, keepdims=True)
        phase = 0.01 * offsets.sum(axis=(1, 2, 3))[:, None, None, None]
        return (amplitude * np.exp(1j * phase)).astype(np.complex64)

    def payload_bytes(self) -> bytes:
        return b""


def _patches(rng, n=700, size=32):
    patches = (rng.standard_normal((n, size, size))
               + 1j * rng.standard_normal((n, size, size))).astype(np.complex64)
    offsets = rng.uniform(-40, 40, (n, 2)) + 100  # sub-pixel positions
    return patches, offsets


@pytest.mark.parametrize("chunks", [[700], [1] * 5 + [695], [64] * 10 + [60], [333, 1, 366]])
def test_chunked_stitch_equals_one_shot_exactly(rng, chunks):
    patches, offsets = _patches(rng)
    whole = stitch_patches(patches, offsets, M=20)
    stitcher = Stitcher(offsets, M=20, chunk_size=50)
    lo = 0
    for size in chunks:
        stitcher.add(patches[lo:lo + size], offsets[lo:lo + size])
        lo += size
    chunked = stitcher.result()
    assert stitcher.count == len(patches)
    assert np.array_equal(chunked.object, whole.object)
    assert np.array_equal(chunked.weight, whole.weight)
    assert (chunked.x0_px, chunked.y0_px) == (whole.x0_px, whole.y0_px)
    # the internal vectorisation step does not matter either
    again = stitch_patches(patches, offsets, M=20, chunk_size=7)
    assert np.array_equal(again.object, whole.object)


def test_stitcher_rejects_positions_outside_its_canvas(rng):
    patches, offsets = _patches(rng, n=10)
    stitcher = Stitcher(offsets, M=20)
    with pytest.raises(ValueError, match="outside the canvas"):
        stitcher.add(patches[:1], offsets[:1] + 500)
    with pytest.raises(ValueError, match="do not match"):
        stitcher.add(patches[:2], offsets[:1])
    with pytest.raises(ValueError, match="crop size"):
        Stitcher(offsets, M=40).add(patches, offsets)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_chunked_inference_does_not_depend_on_the_chunk_size(rng, gridsize):
    count, n = 150, 64
    scan = Scan(diffraction=(rng.random((count, n, n)) * 4).astype(np.float32),
                xcoords=rng.uniform(40, 120, count), ycoords=rng.uniform(40, 120, count),
                probe=np.ones((n, n), np.complex64))
    model = StandInModel(n, gridsize)
    whole = reconstruct(model, scan, batch_size=16, chunk_groups=10**6, keep_patches=True)
    assert model.calls == [count]
    model.calls.clear()
    chunked = reconstruct(model, scan, batch_size=16, chunk_groups=40, keep_patches=True)
    assert model.calls == [48, 48, 48, 6]  # chunks rounded up to whole predict batches
    assert np.array_equal(chunked.stitched.object, whole.stitched.object)
    assert np.array_equal(chunked.patches, whole.patches)
    assert np.array_equal(chunked.positions_xy, whole.positions_xy)
    assert whole.patches.shape == (count, n, n)
    assert reconstruct(model, scan, keep_patches=False).patches is None
    assert reconstruct(model, scan).patches is None  # only kept on request


def test_stitcher_refuses_a_canvas_no_scan_could_need(rng):
    from ptycho.errors import InputError

    offsets = np.array([[0.0, 0.0], [1e300, 5.0]])
    with pytest.raises(InputError, match="scan too large to stitch"):
        Stitcher(offsets, M=20)
    with pytest.raises(InputError, match="units"):
        stitch_patches(np.ones((2, 32, 32), np.complex64), np.array([[0.0, 0.0], [4e4, 0.0]]))


def test_pixel_weights_make_a_weighted_average(rng):
    patches, offsets = _patches(rng, n=60)
    uniform = stitch_patches(patches, offsets, M=20)
    ones = stitch_patches(patches, offsets, M=20, pixel_weight=np.ones((20, 20)))
    np.testing.assert_allclose(ones.object, uniform.object, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ones.weight, uniform.weight, rtol=1e-6)
    # a constant object seen by every patch: any positive weighting averages to that constant
    constant = np.full(patches.shape, 0.5 + 0.25j, np.complex64)
    weighted = stitch_patches(constant, offsets, M=20, pixel_weight=rng.uniform(0.1, 1, (20, 20)))
    covered = weighted.weight > 1e-3
    np.testing.assert_allclose(weighted.object[covered], 0.5 + 0.25j, rtol=1e-5)
    # zero weight outside a central 4x4 box: only those pixels of one patch are stitched
    box = np.zeros((20, 20))
    box[8:12, 8:12] = 1.0
    boxed = stitch_patches(patches[:1], np.round(offsets[:1]), M=20, pixel_weight=box)
    assert (boxed.weight > 0).sum() == 16
    np.testing.assert_allclose(np.sort_complex(boxed.object[boxed.weight > 0]),
                               np.sort_complex(patches[0, 14:18, 14:18].ravel()), rtol=1e-6)
    with pytest.raises(ValueError, match="pixel_weight"):
        Stitcher(offsets, M=20, pixel_weight=np.zeros((20, 20)))
    with pytest.raises(ValueError, match="pixel_weight"):
        Stitcher(offsets, M=20, pixel_weight=np.ones((10, 10)))


def test_probe_weight_is_the_normalised_central_intensity():
    from ptycho.stitching import probe_weight

    probe = np.zeros((64, 64), np.complex64)
    probe[30:34, 30:34] = 2j
    weight = probe_weight(probe, 32)
    assert weight.shape == (32, 32) and weight.dtype == np.float32 and weight.max() == 1.0
    assert weight[14:18, 14:18].min() == 1.0 and weight.sum() == 16
    with pytest.raises(ValueError, match="zero"):
        probe_weight(np.zeros((64, 64)), 20)


def test_reconstruct_with_probe_weighting(rng):
    from ptycho.errors import InputError

    count, n = 60, 64
    scan = Scan(diffraction=(rng.random((count, n, n)) * 4).astype(np.float32),
                xcoords=rng.uniform(40, 120, count), ycoords=rng.uniform(40, 120, count),
                probe=np.ones((n, n), np.complex64))
    model = StandInModel(n)
    model.probe = np.exp(-((np.arange(n) - n / 2) ** 2)[:, None] / 200
                         - ((np.arange(n) - n / 2) ** 2)[None, :] / 200).astype(np.complex64)
    weighted = reconstruct(model, scan, stitch_weight="probe")
    uniform = reconstruct(model, scan, stitch_weight="crop", crop_px=32)
    assert weighted.stitched.object.shape == uniform.stitched.object.shape
    default = reconstruct(model, scan)  # the default: probe weighting of the central N/2 box
    assert np.array_equal(default.stitched.object, weighted.stitched.object)
    assert np.array_equal(default.stitched.weight, weighted.stitched.weight)
    assert (reconstruct(model, scan, stitch_weight="crop").stitched.object.shape
            != uniform.stitched.object.shape)  # 'crop' alone stitches 20 px, not N/2
    assert not np.allclose(weighted.stitched.object, uniform.stitched.object)
    with pytest.raises(InputError, match="stitch_weight"):
        reconstruct(model, scan, stitch_weight="gaussian")
    with pytest.raises(InputError, match="crop_px"):
        reconstruct(model, scan, crop_px=65)
