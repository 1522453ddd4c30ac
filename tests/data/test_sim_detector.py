"""Realistic detector frames (``simulate --realistic``): the file's stated properties, reading
it back with the reading options, and what the masks are worth to the solver."""

from __future__ import annotations

import copy
import functools

import h5py
import numpy as np
import pytest
from scipy import ndimage

from ptycho import physics
from ptycho.data.cxi import TRUTH
from ptycho.data.io import read_scan
from ptycho.data.reading import ReadOptions
from ptycho.data.sim_detector import DetectorDefects, simulate_realistic, write_realistic_cxi
from ptycho.errors import InputError

N = 64
SMALL = dict(N=N, object_size=112, scan_kind="spiral", step=6.0, n_positions=49, nphotons=1e5,
             seed=3, object_kind="grf")


@functools.lru_cache(maxsize=1)
def _realistic():
    return simulate_realistic(**SMALL)


@pytest.fixture(scope="module")
def cxi_file(tmp_path_factory):
    return write_realistic_cxi(tmp_path_factory.mktemp("realistic") / "real.cxi", _realistic())


def _window(array, centre):
    row, col = centre
    return array[..., row - N // 2:row + N // 2, col - N // 2:col + N // 2]


def test_the_frames_have_the_stated_properties():
    real = _realistic()
    frames, mask, level = real.frames, real.mask, real.saturation_counts
    assert frames.shape == (49, 2 * N, 2 * N) and frames.dtype == np.uint32
    assert real.centre_px == (N - 6, N + 8)  # default offset (-round(N/10), round(N/8))
    rows, cols = np.indices(mask.shape)
    beamstop = (rows - real.centre_px[0]) ** 2 + (cols - real.centre_px[1]) ** 2 <= 2 ** 2
    assert mask[beamstop].all() and np.all(frames[:, beamstop] == 0)
    # two module-gap stripes of 2 px, masked, zero counts
    gap_rows = np.flatnonzero(mask.all(axis=1))
    gap_cols = np.flatnonzero(mask.all(axis=0))
    assert len(gap_rows) == 2 and len(gap_cols) == 2
    assert np.all(frames[:, gap_rows] == 0) and np.all(frames[:, :, gap_cols] == 0)
    # ~3 % dead pixels elsewhere (zero in every frame), 2 hot pixels (constant, level // 2)
    other = mask.copy()
    other[gap_rows] = other[:, gap_cols] = other[beamstop] = False
    hot = other & np.all(frames == level // 2, axis=0)
    assert hot.sum() == 2
    dead = other & ~hot
    assert 0.02 < dead.sum() / (~beamstop).sum() < 0.04 and np.all(frames[:, dead] == 0)
    # saturation: clipped at the stated level, reached, not in the mask
    valid = frames[:, ~mask]
    assert frames.max() == level and np.any(valid == level)
    # the centre of mass of the mean frame is off the frame centre by the offset
    row, col = ndimage.center_of_mass(np.where(mask, 0.0, frames.mean(axis=0)))
    assert abs(row - real.centre_px[0]) < 1 and abs(col - real.centre_px[1]) < 1
    assert abs(col - N) > 6
    # two modes, the second carrying 20 % of the power
    powers = physics.mode_powers(real.true_probe)
    np.testing.assert_allclose(powers / powers.sum(), [0.8, 0.2], atol=1e-6)
    # the window holds the clean scan's counts (bad pixels zeroed, saturation clipped)
    clean = np.rint(real.clean.scan.diffraction.astype(np.float64) ** 2)
    window = _window(frames, real.centre_px).astype(np.float64)
    good = ~_window(mask, real.centre_px)
    np.testing.assert_array_equal(window[:, good], np.minimum(clean[:, good], level))


def test_reading_it_back_gives_centred_patterns_the_mask_and_the_truth(cxi_file):
    real = _realistic()
    level = real.saturation_counts
    with h5py.File(cxi_file) as handle:
        assert handle["entry_1/instrument_1/detector_1/saturation_value"][()] == level
        np.testing.assert_array_equal(handle[f"{TRUTH}/beam_centre_px"][()], real.centre_px)
        assert handle[f"{TRUTH}/probe"].shape == (2, N, N)
    # the stated centre gives exactly the clean window (the centre of mass of the mean frame,
    # --crop alone, lands within a pixel: test_the_frames_have_the_stated_properties)
    for probe_file in (None, str(cxi_file)):
        scan = read_scan(cxi_file, options=ReadOptions(
            crop_px=N, saturation_counts=level, centre_px=real.centre_px, probe_file=probe_file))
        assert scan.diffraction.shape == (49, N, N) and scan.saturation_counts == level
        np.testing.assert_array_equal(scan.bad_pixels, _window(real.mask, real.centre_px))
        counts = np.rint(scan.diffraction.astype(np.float64) ** 2)
        clean = np.rint(real.clean.scan.diffraction.astype(np.float64) ** 2)
        usable = ~scan.bad_pixels & (counts < level)
        np.testing.assert_allclose(counts[usable], clean[usable], rtol=1e-5)
        assert np.all(counts[:, N // 2, N // 2] == 0)  # the beamstop on the DC pixel
        np.testing.assert_allclose(scan.xcoords, real.clean.scan.xcoords, atol=1e-9)
        np.testing.assert_allclose(scan.ycoords, real.clean.scan.ycoords, atol=1e-9)
        np.testing.assert_array_equal(scan.object_guess, real.clean.scan.object_guess)
        np.testing.assert_allclose(scan.probe, real.probe_guess)
        assert scan.probe_modes is None  # the probe guess is coherent; the truth has 2 modes


def test_same_seed_same_frames_and_defaults_scale_with_N():
    small = simulate_realistic(**{**SMALL, "n_positions": 9, "object_size": 96})
    again = simulate_realistic(**{**SMALL, "n_positions": 9, "object_size": 96})
    np.testing.assert_array_equal(small.frames, again.frames)
    resolved = DetectorDefects().resolved(128)
    assert resolved.beam_offset_px == (-13, 16) and resolved.beamstop_radius_px == 4
    assert resolved.gap_width_px == 4
    with pytest.raises(InputError) as caught:
        DetectorDefects(beam_offset_px=(40, 0)).resolved(N)
    assert caught.value.where == "--beam-offset"


def test_masks_on_beat_masks_off_for_the_solver():
    """Measured (seed 3, 49 positions, 20 iterations, probe fixed at the true modes):
    amplitude PSNR 26.7 dB with the mask and saturation, 4.6 dB without (the beamstop, gaps
    and dead pixels read as zero counts, the hot pixels as signal); asserted with margin: at
    least 15 dB better."""
    from ptycho.evaluation import evaluate_reconstruction
    from ptycho.refine import RefineOptions, refine

    real = _realistic()
    level, modes = real.saturation_counts, real.true_probe
    window = _window(real.frames, real.centre_px)
    bad = _window(real.mask, real.centre_px)
    amplitude = np.sqrt(window.astype(np.float64)).astype(np.float32)
    results = {}
    for label, bad_pixels, saturation in (("on", bad, level), ("off", None, None)):
        scan = copy.copy(real.clean.scan)
        scan.diffraction, scan.bad_pixels, scan.saturation_counts = amplitude, bad_pixels, saturation
        scan.probe, scan.probe_modes = modes[0], modes
        result = refine(scan, options=RefineOptions(iterations=20, probe_modes=2))
        metrics = evaluate_reconstruction(result.object, result.x0_px, result.y0_px,
                                          scan.object_guess, valid=result.weight > 0)
        results[label] = metrics["amplitude"]["psnr_db"]
    assert results["on"] > results["off"] + 15, results
