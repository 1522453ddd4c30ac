"""Scan simulator: objects, probes, scan patterns, photon scaling, Poisson noise, NPZ round trip."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.spatial import cKDTree

from ptycho import physics
from ptycho.data.npz import read_scan_npz
from ptycho.data.sim_positions import allowed_box
from ptycho.data.simulation import (
    draw_counts,
    expected_intensity,
    make_object,
    make_positions,
    make_probe,
    mixed_state_probe,
    scale_to_photons,
    simulate,
    simulate_scan,
    write_simulation,
)
from ptycho.errors import InputError

SMALL = {"N": 32, "object_size": 128, "step": 6.0}


@pytest.fixture(scope="module")
def sim():
    return simulate(object_kind="grf", probe_kind="defocused", scan_kind="raster", jitter=1.0,
                    nphotons=1e5, seed=3, **SMALL)


# ---------------------------------------------------------------------------------------------
# photon scaling and Poisson statistics
# ---------------------------------------------------------------------------------------------

def test_mean_expected_counts_per_pattern_equals_nphotons_exactly(sim):
    totals = sim.expected_intensity.sum(axis=(1, 2))
    assert totals.mean() == pytest.approx(1e5, rel=1e-12)
    assert totals.std() > 0  # one scalar for the whole scan, not one per pattern


def test_mean_measured_counts_per_pattern_is_nphotons(sim):
    totals = sim.counts.sum(axis=(1, 2))
    # Poisson: the mean of M totals has standard deviation sqrt(nphotons / M)
    tolerance = 5 * math.sqrt(1e5 / len(totals))
    assert abs(totals.mean() - 1e5) < tolerance
    assert sim.scan.mean_photons_per_pattern() == pytest.approx(totals.mean(), rel=1e-5)


def test_counts_have_poisson_mean_and_variance(sim):
    intensity, counts = sim.expected_intensity, sim.counts
    band = (intensity >= 10) & (intensity <= 100)
    assert band.sum() > 20_000
    expected = intensity[band]
    observed = counts[band].astype(np.float64)
    # mean of counts / I ~ 1
    assert observed.sum() / expected.sum() == pytest.approx(1.0, abs=0.01)
    # variance ~ mean: standardised residuals have unit variance
    residual = (observed - expected) / np.sqrt(expected)
    assert residual.mean() == pytest.approx(0.0, abs=0.03)
    assert residual.var() == pytest.approx(1.0, abs=0.05)
    assert np.array_equal(counts, np.round(counts))
    assert counts.min() >= 0


def test_repeated_draws_of_one_pattern_match_poisson_moments():
    rng = np.random.default_rng(0)
    intensity = np.linspace(10.0, 100.0, 50)
    draws = np.stack([draw_counts(intensity, rng) for _ in range(4000)]).astype(np.float64)
    mean = draws.mean(axis=0)
    var = draws.var(axis=0, ddof=1)
    np.testing.assert_allclose(mean, intensity, rtol=0.05)
    np.testing.assert_allclose(var / mean, 1.0, atol=0.12)
    assert np.mean(var / mean) == pytest.approx(1.0, abs=0.03)


def test_expected_intensity_is_the_physics_forward_model(sim):
    scan = sim.scan
    raw = expected_intensity(scan.object_guess, scan.probe, scan.xcoords, scan.ycoords)
    np.testing.assert_allclose(raw * sim.photon_scale, sim.expected_intensity, rtol=1e-12)
    amplitude = physics.simulate_amplitude(scan.object_guess, scan.probe, scan.xcoords,
                                           scan.ycoords)
    np.testing.assert_allclose(raw, amplitude ** 2, rtol=1e-12)
    # Parseval: each pattern carries the exit-wave power
    patches = physics.extract_patches(scan.object_guess, scan.xcoords, scan.ycoords, scan.N)
    exit_power = np.sum(np.abs(physics.illuminate(patches, scan.probe)) ** 2, axis=(1, 2))
    np.testing.assert_allclose(raw.sum(axis=(1, 2)), exit_power, rtol=1e-10)
    # DC at (N/2, N/2) dominates
    mean_pattern = raw.mean(axis=0)
    assert np.unravel_index(mean_pattern.argmax(), mean_pattern.shape) == (scan.N // 2,
                                                                         scan.N // 2)


def test_scale_to_photons_rejects_bad_values():
    with pytest.raises(InputError, match="nphotons"):
        scale_to_photons(np.ones((2, 4, 4)), 0)
    with pytest.raises(InputError, match="nphotons"):
        scale_to_photons(np.ones((2, 4, 4)), float("nan"))
    with pytest.raises(InputError):
        scale_to_photons(np.zeros((2, 4, 4)), 10)


def test_diffraction_is_sqrt_of_counts_as_float32(sim):
    assert sim.scan.diffraction.dtype == np.float32
    np.testing.assert_array_equal(sim.scan.diffraction, np.sqrt(sim.counts).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# determinism and file round trip
# ---------------------------------------------------------------------------------------------

def test_same_seed_is_bit_identical_and_other_seed_differs(tmp_path):
    args = dict(object_kind="lines", scan_kind="random", n_positions=40, jitter=0.5, **SMALL)
    first = simulate(seed=11, **args)
    second = simulate(seed=11, **args)
    other = simulate(seed=12, **args)
    for a, b in ((first.counts, second.counts),
                 (first.scan.object_guess, second.scan.object_guess),
                 (first.scan.xcoords, second.scan.xcoords),
                 (first.scan.ycoords, second.scan.ycoords),
                 (first.scan.probe, second.scan.probe)):
        assert np.array_equal(a, b)
    assert not np.array_equal(first.counts, other.counts)
    assert not np.array_equal(first.scan.object_guess, other.scan.object_guess)
    assert not np.array_equal(first.scan.xcoords, other.scan.xcoords)

    write_simulation(tmp_path / "a.npz", first)
    write_simulation(tmp_path / "b.npz", second)
    with np.load(tmp_path / "a.npz") as fa, np.load(tmp_path / "b.npz") as fb:
        assert sorted(fa.files) == sorted(fb.files)
        for key in fa.files:
            assert fa[key].dtype == fb[key].dtype
            assert fa[key].tobytes() == fb[key].tobytes(), key


def test_changing_the_scan_keeps_the_object():
    raster = simulate(scan_kind="raster", seed=5, **SMALL)
    spiral = simulate(scan_kind="spiral", seed=5, **SMALL)
    assert np.array_equal(raster.scan.object_guess, spiral.scan.object_guess)


def test_written_npz_reads_back(sim, tmp_path):
    path = tmp_path / "sim.npz"
    write_simulation(path, sim)
    scan = read_scan_npz(path)
    assert scan.measured_domain == "amplitude"
    np.testing.assert_array_equal(scan.diffraction, np.sqrt(sim.counts).astype(np.float32))
    np.testing.assert_array_equal(np.round(scan.diffraction.astype(np.float64) ** 2), sim.counts)
    np.testing.assert_array_equal(scan.xcoords, sim.scan.xcoords)
    np.testing.assert_array_equal(scan.xcoords_start, sim.scan.xcoords_start)
    assert scan.object_guess.dtype == np.complex64
    np.testing.assert_array_equal(scan.object_guess, sim.scan.object_guess)
    np.testing.assert_array_equal(scan.probe, sim.scan.probe)
    height, width = scan.object_guess.shape
    n = scan.N
    assert np.all((scan.xcoords >= n / 2) & (scan.xcoords <= width - n / 2))
    assert np.all((scan.ycoords >= n / 2) & (scan.ycoords <= height - n / 2))
    with np.load(path, allow_pickle=False) as npz:
        sim_keys = [k for k in npz.files if k.startswith("sim_")]
        assert {"sim_nphotons", "sim_seed", "sim_object", "sim_probe", "sim_scan"} <= set(sim_keys)
        assert all(npz[k].dtype != object for k in npz.files)
        assert str(npz["sim_object"]) == "grf"
        assert str(npz["sim_probe"]) == "defocused"
        assert str(npz["sim_scan"]) == "raster"
        assert float(npz["sim_nphotons"]) == 1e5
        assert int(npz["sim_seed"]) == 3


def test_simulate_scan_returns_the_scan():
    scan = simulate_scan(n_positions=5, seed=1, **SMALL)
    assert scan.diffraction.shape == (5, 32, 32)
    assert scan.object_guess.shape == (128, 128)
    assert scan.probe.dtype == np.complex64


def test_500_positions_at_N64_is_fast():
    start = time.perf_counter()
    scan = simulate_scan(scan_kind="random", n_positions=500, N=64, object_size=256, seed=0)
    assert time.perf_counter() - start < 5.0
    assert scan.n_positions == 500


# ---------------------------------------------------------------------------------------------
# scan patterns
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("step", [8.0, 7.5, 5.3])
def test_raster_without_jitter_has_integer_positions_on_a_centred_grid(step):
    pos = make_positions("raster", 256, 64, step=step)
    assert np.array_equal(pos.xcoords, np.round(pos.xcoords))
    assert np.array_equal(pos.ycoords, np.round(pos.ycoords))
    assert np.array_equal(pos.xcoords, pos.xcoords_start)
    xs = np.unique(pos.xcoords)
    assert len(pos.xcoords) == len(xs) ** 2
    assert np.all(np.abs(np.diff(xs) - step) <= 1.0)
    assert np.mean(np.diff(xs)) == pytest.approx(step, abs=0.05)
    assert (xs.min() + xs.max()) / 2 == pytest.approx(128, abs=1.0)
    assert xs.min() >= 32 and xs.max() <= 224


def test_raster_step_8_on_256_covers_the_allowed_box():
    pos = make_positions("raster", 256, 64, step=8)
    assert len(pos.xcoords) == 25 * 25
    assert pos.xcoords.min() == 32 and pos.xcoords.max() == 224
    # row-major: x varies fastest
    assert pos.ycoords[0] == pos.ycoords[24] and pos.xcoords[1] - pos.xcoords[0] == 8


def test_raster_with_k_positions_takes_a_centred_subgrid():
    pos = make_positions("raster", 256, 64, step=8, n_positions=50)
    assert len(pos.xcoords) == 50
    assert len(np.unique(pos.xcoords)) == 8  # ceil(sqrt(50)) columns
    assert np.mean(np.unique(pos.xcoords)) == pytest.approx(128, abs=4)
    with pytest.raises(InputError, match="at most 625"):
        make_positions("raster", 256, 64, step=8, n_positions=626)


@pytest.mark.parametrize("kind", ["raster", "spiral", "random"])
def test_every_patch_lies_inside_the_object(kind):
    jitter = 2.5
    pos = make_positions(kind, (100, 140), 32, step=5, jitter=jitter, rng=0)
    assert len(pos.xcoords) > 20
    assert np.all((pos.xcoords >= 16) & (pos.xcoords <= 140 - 16))
    assert np.all((pos.ycoords >= 16) & (pos.ycoords <= 100 - 16))
    assert np.all(np.abs(pos.xcoords - pos.xcoords_start) <= jitter)
    assert np.all(np.abs(pos.ycoords - pos.ycoords_start) <= jitter)
    assert np.any(pos.xcoords != pos.xcoords_start)
    # the whole patch is sampled from inside: no zero padding enters the exit wave
    obj = np.ones((100, 140), np.complex128)
    patches = physics.extract_patches(obj, pos.xcoords, pos.ycoords, 32)
    np.testing.assert_allclose(np.abs(patches), 1.0, atol=1e-12)


def test_spiral_mean_spacing_is_about_step():
    pos = make_positions("spiral", 512, 64, step=10)
    points = np.column_stack([pos.xcoords, pos.ycoords])
    distances, _ = cKDTree(points).query(points, k=2)
    assert distances[:, 1].mean() == pytest.approx(10, rel=0.1)
    box = allowed_box(512, 64)
    centre = ((box[0] + box[1]) / 2, (box[2] + box[3]) / 2)
    assert (pos.xcoords[0], pos.ycoords[0]) == pytest.approx(centre)
    assert len(make_positions("spiral", 512, 64, step=10, n_positions=30).xcoords) == 30


def test_random_positions_default_to_raster_density_and_accept_k():
    pos = make_positions("random", 256, 64, step=8, rng=1)
    assert len(pos.xcoords) == round(192 * 192 / 64)
    assert len(make_positions("random", 256, 64, step=8, n_positions=7, rng=1).xcoords) == 7


def test_object_too_small_is_an_input_error():
    with pytest.raises(InputError, match="object too small"):
        make_positions("raster", 64, 64, step=8, jitter=1.0)
    with pytest.raises(InputError, match="object too small"):
        simulate(object_size=60, N=64)
    make_positions("raster", 64, 64, step=8)  # exactly one position fits


@pytest.mark.parametrize("kwargs", [
    {"scan_kind": "zigzag"}, {"probe_kind": "gaussian"}, {"object_kind": "noise"},
    {"step": 0}, {"jitter": -1}, {"n_positions": 0}, {"nphotons": -5}, {"seed": -1},
    {"N": 33}, {"object_kind": "image:not_an_image"},
])
def test_invalid_arguments_are_input_errors(kwargs):
    args = dict(SMALL)
    args.update(kwargs)
    with pytest.raises(InputError):
        simulate(**args)


# ---------------------------------------------------------------------------------------------
# probes
# ---------------------------------------------------------------------------------------------

def _radial_profile(field: np.ndarray) -> np.ndarray:
    n = field.shape[0]
    axis = np.arange(n) - (n - 1) / 2
    radius = np.hypot(axis[:, None], axis[None, :]).astype(int)
    return np.bincount(radius.ravel(), np.abs(field).ravel()) / np.bincount(radius.ravel())


def test_default_probe_is_the_physics_default():
    np.testing.assert_array_equal(make_probe("default", 64), physics.default_probe(64))


def test_defocused_probe_is_complex_with_rings():
    probe = make_probe("defocused", 64)
    default = make_probe("default", 64)
    assert probe.shape == (64, 64) and np.iscomplexobj(probe)
    assert np.sum(np.abs(probe) ** 2) == pytest.approx(np.sum(np.abs(default) ** 2), rel=1e-9)
    bright = np.abs(probe) > 0.1 * np.abs(probe).max()
    phase = np.angle(probe[bright])
    assert np.ptp(phase) > 1.0  # non-trivial phase
    # not real up to a global phase: |sum P^2| / sum |P|^2 is 1 exactly for such probes
    assert abs(np.sum(probe ** 2)) / np.sum(np.abs(probe) ** 2) < 0.95
    assert abs(np.sum(default ** 2)) / np.sum(np.abs(default) ** 2) == pytest.approx(1.0)
    # rings: the radial amplitude profile inside the beam has several local maxima
    profile = _radial_profile(probe)[:24]
    padded = np.concatenate([[-np.inf], profile, [-np.inf]])
    maxima = np.flatnonzero((padded[1:-1] > padded[:-2]) & (padded[1:-1] > padded[2:]))
    assert len(maxima) >= 2
    dip = profile[maxima[0]:maxima[1]].min()
    assert dip < 0.8 * min(profile[maxima[0]], profile[maxima[1]])
    default_profile = _radial_profile(default)[:24]
    assert np.all(np.diff(default_profile) <= 1e-9)  # the default probe has no rings
    # most of the power sits well inside the N x N window
    axis = np.arange(64) - 31.5
    outside = np.hypot(axis[:, None], axis[None, :]) > 64 / 3
    assert np.sum(np.abs(probe[outside]) ** 2) < 0.02 * np.sum(np.abs(probe) ** 2)
    # centred like the probe mask
    assert np.allclose(np.abs(probe), np.abs(probe[::-1, ::-1]), atol=1e-9)


# ---------------------------------------------------------------------------------------------
# objects
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["lines", "grf", "grf:8", "image:camera", "image:astronaut:brick"])
def test_objects_have_documented_ranges(kind):
    obj = make_object(kind, (96, 80), np.random.default_rng(0))
    assert obj.shape == (96, 80) and np.iscomplexobj(obj)
    amplitude, phase = np.abs(obj), np.angle(obj)
    assert amplitude.min() >= 0.5 - 1e-9 and amplitude.max() <= 1 + 1e-9
    assert phase.min() >= -math.pi / 2 - 1e-9 and phase.max() <= math.pi / 2 + 1e-9
    assert amplitude.std() > 0.02 and phase.std() > 0.05


def test_image_camera_uses_the_camera_image():
    from skimage.data import camera
    from skimage.transform import resize

    obj = make_object("image:camera", 128)
    reference = resize(camera().astype(float), (128, 128), anti_aliasing=True)
    amplitude = np.abs(obj)
    assert np.corrcoef(amplitude.ravel(), reference.ravel())[0, 1] > 0.99
    # the phase is a different map (rotated image), not a copy of the amplitude
    assert abs(np.corrcoef(amplitude.ravel(), np.angle(obj).ravel())[0, 1]) < 0.9
    assert make_object("image:camera", 128) is not obj
    np.testing.assert_array_equal(make_object("image:camera", 128), obj)  # deterministic


def test_image_scan_simulates():
    sim = simulate(object_kind="image:camera", n_positions=10, seed=0, **SMALL)
    assert sim.scan.n_positions == 10
    assert sim.counts.sum(axis=(1, 2)).mean() == pytest.approx(1e6, rel=0.01)


def test_lines_have_a_transparent_flat_background():
    obj = make_object("lines", 128, 0)
    assert np.median(np.abs(obj)) == pytest.approx(1.0, abs=0.02)
    assert np.median(np.angle(obj)) == pytest.approx(0.0, abs=0.02)
    assert np.abs(obj).min() < 0.7


def test_grf_amplitude_and_phase_are_independent_fields():
    obj = make_object("grf", 128, 0)
    assert abs(np.corrcoef(np.abs(obj).ravel(), np.angle(obj).ravel())[0, 1]) < 0.2
    assert not np.array_equal(make_object("grf", 128, 0), make_object("grf", 128, 1))


def test_grf_correlation_length_sets_the_feature_size():
    def mean_gradient(obj):
        return np.mean(np.abs(np.diff(np.abs(obj), axis=0)))

    fine, coarse = make_object("grf", 256, 0), make_object("grf:8", 256, 0)
    assert mean_gradient(coarse) < 0.5 * mean_gradient(fine)
    np.testing.assert_array_equal(make_object("grf:3", 256, 0), fine)  # 3 px is the default
    for bad in ("grf:0", "grf:-2", "grf:x", "grf:", "grf:nan"):
        with pytest.raises(InputError, match="grf:SIGMA_PX"):
            make_object(bad, 64, 0)


# ---------------------------------------------------------------------------------------------
# Mixed-state (partially coherent) illumination
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_mixed_state_probe_splits_the_power_into_two_orthogonal_modes(fraction):
    probe = make_probe("defocused", 32)
    modes = mixed_state_probe(probe, second_mode_power=fraction, seed=4)
    assert modes.shape == (2, 32, 32)
    powers = physics.mode_powers(modes)
    np.testing.assert_allclose(powers / powers.sum(), [1 - fraction, fraction], rtol=1e-12)
    assert powers.sum() == pytest.approx(physics.mode_powers(probe)[0], rel=1e-12)
    assert abs(np.vdot(modes[0], modes[1])) < 1e-12 * powers.sum()
    np.testing.assert_allclose(modes[0], probe * np.sqrt(1 - fraction), rtol=1e-12)
    np.testing.assert_array_equal(mixed_state_probe(probe, fraction, seed=4), modes)
    assert not np.allclose(mixed_state_probe(probe, fraction, seed=5)[1], modes[1])


@pytest.mark.parametrize("kwargs", [{"second_mode_power": 0.0}, {"second_mode_power": 0.6},
                                    {"second_mode_power": True}, {"seed": -1}])
def test_mixed_state_probe_rejects_bad_arguments(kwargs):
    with pytest.raises(InputError):
        mixed_state_probe(make_probe("default", 32), **kwargs)


def test_a_two_mode_probe_simulates_the_incoherent_sum(tmp_path):
    modes = mixed_state_probe(make_probe("default", 32), 0.2, seed=0)
    result = simulate("grf", **SMALL, nphotons=1e5, seed=3, probe=modes)
    scan = result.scan
    assert scan.probe.shape == (32, 32) and scan.probe_modes.shape == (2, 32, 32)
    np.testing.assert_array_equal(scan.probe, scan.probe_modes[0])
    raw = expected_intensity(scan.object_guess, scan.probe_modes, scan.xcoords, scan.ycoords)
    np.testing.assert_allclose(raw * result.photon_scale, result.expected_intensity, rtol=1e-12)
    coherent = expected_intensity(scan.object_guess, scan.probe, scan.xcoords, scan.ycoords)
    assert not np.allclose(raw, coherent / 0.8)    # not just a brighter single mode
    assert result.expected_intensity.sum(axis=(1, 2)).mean() == pytest.approx(1e5)
    assert int(result.metadata["sim_probe_modes"]) == 2
    np.testing.assert_allclose(result.metadata["sim_mode_power"], [0.8, 0.2], atol=1e-6)
    write_simulation(tmp_path / "modes.npz", result)
    back = read_scan_npz(tmp_path / "modes.npz")
    np.testing.assert_array_equal(back.probe_modes, scan.probe_modes)
    np.testing.assert_array_equal(back.probe, scan.probe)
    with pytest.raises(InputError, match="probe"):
        simulate("grf", **SMALL, probe=np.zeros((2, 32, 32)))
