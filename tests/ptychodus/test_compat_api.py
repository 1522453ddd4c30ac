"""Unit tests of the legacy facades ptychodus calls (``ptycho.raw_data``, ``loader``, ``probe``,
``tf_helper``, ``model``, ``model_manager``, ``workflows.components``).

One tiny model is trained once for the module (36 positions, N=64, 1 epoch) through
``run_cdi_example`` with ``output_dir=Path()`` inside an empty working directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ptycho import params, physics
from ptycho.data.simulation import simulate
from ptycho.errors import InputError

N = 64
N_POSITIONS = 36


@pytest.fixture(scope="module")
def sim():
    return simulate("grf", N=N, object_size=112, step=8.0, n_positions=N_POSITIONS,
                    nphotons=1e5, seed=1)


@pytest.fixture(scope="module")
def counts(sim):
    assert sim.counts.max() < 2 ** 16
    return sim.counts.astype(np.uint16)


@pytest.fixture(scope="module", autouse=True)
def _restore_globals():
    from ptycho import model_manager

    saved = dict(params.cfg)
    yield
    params.cfg.clear()
    params.cfg.update(saved)
    model_manager.clear()


def _raw(sim, counts, probe=None, **kwargs):
    from ptycho.raw_data import RawData

    probe = sim.scan.probe[None] if probe is None else probe
    return RawData.from_coords_without_pc(
        xcoords=sim.scan.xcoords, ycoords=sim.scan.ycoords, diff3d=counts, probeGuess=probe,
        scan_index=np.zeros(N_POSITIONS, dtype=int), objectGuess=sim.scan.object_guess, **kwargs)


# ------------------------------------------------------------------------------------------
# RawData
# ------------------------------------------------------------------------------------------


def test_rawdata_uses_probe_mode_0(sim, counts):
    modes = np.stack([sim.scan.probe, 0.3 * sim.scan.probe[::-1], 0.1j * sim.scan.probe])
    raw = _raw(sim, counts, probe=modes)
    assert raw.probeGuess.shape == (N, N)
    np.testing.assert_array_equal(raw.probeGuess, modes[0].astype(np.complex64))


def test_rawdata_passes_the_modes_to_a_mixed_state_model(sim, counts, tmp_path,
                                                         monkeypatch):
    """ptychodus's (modes, N, N) probe: RawData.probeGuess stays mode 0 (2-D); a model with
    ModelConfig.probe_modes = 2 trained through run_cdi_example starts from both modes."""
    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.data.simulation import mixed_state_probe
    from ptycho.workflows.components import run_cdi_example

    modes = mixed_state_probe(sim.scan.probe, 0.2)
    raw = _raw(sim, counts, probe=modes)
    assert raw.probeGuess.shape == (N, N)
    np.testing.assert_array_equal(raw.scan.probe_modes, modes.astype(np.complex64))
    config = TrainingConfig(model=ModelConfig(N=0, n_filters_scale=1, probe_modes=2),
                            batch_size=16, nepochs=1, output_dir=tmp_path)
    monkeypatch.chdir(tmp_path)
    _, _, results = run_cdi_example(raw, None, config)
    trained = results["model"].probe
    assert trained.shape == (2, N, N)      # both modes, as given (the probe did not train)
    np.testing.assert_allclose(trained, physics.normalize_probe(raw.scan.initial_probe(2)),
                               rtol=1e-5, atol=1e-6)


def test_rawdata_integer_diff3d_is_intensity(sim, counts):
    raw = _raw(sim, counts)
    assert raw.diff3d.dtype == np.float32
    np.testing.assert_allclose(raw.diff3d, np.sqrt(counts.astype(np.float64)), rtol=1e-6)
    assert raw.scan.measured_domain == "intensity"


def test_rawdata_float_diff3d_is_amplitude_unless_told(sim, counts):
    amplitude = np.sqrt(counts.astype(np.float32))
    np.testing.assert_array_equal(_raw(sim, amplitude).diff3d, amplitude)
    as_counts = _raw(sim, counts.astype(np.float32), measurement="intensity")
    np.testing.assert_allclose(as_counts.diff3d, amplitude, rtol=1e-6)
    with pytest.raises(InputError):
        _raw(sim, counts, measurement="photons")


def test_rawdata_legacy_attributes(sim, counts):
    raw = _raw(sim, counts)
    np.testing.assert_array_equal(raw.xcoords, sim.scan.xcoords)
    np.testing.assert_array_equal(raw.ycoords, sim.scan.ycoords)
    np.testing.assert_array_equal(raw.xcoords_start, sim.scan.xcoords)
    assert raw.diff3d.shape == (N_POSITIONS, N, N)
    assert raw.scan_index.shape == (N_POSITIONS,)
    assert raw.objectGuess.shape == sim.scan.object_guess.shape
    assert len(raw) == N_POSITIONS


def test_rawdata_legacy_constructor(sim):
    from ptycho.raw_data import RawData

    scan = sim.scan
    raw = RawData(scan.xcoords, scan.ycoords, scan.xcoords + 0.5, scan.ycoords, scan.diffraction,
                  scan.probe, np.zeros(N_POSITIONS, dtype=int), scan.object_guess)
    np.testing.assert_array_equal(raw.diff3d, scan.diffraction)  # float: amplitude
    np.testing.assert_array_equal(raw.xcoords_start, scan.xcoords + 0.5)
    assert raw.scan.n_positions == N_POSITIONS


def test_rawdata_from_ptychodus_export_file(tmp_path, sim, counts):
    """The NPZ written by ptychodus's save_ptychopinn_training_data (section 6.3 keys)."""
    from ptycho.raw_data import RawData

    path = tmp_path / "train_data.npz"
    np.savez(path, xcoords=sim.scan.xcoords, ycoords=sim.scan.ycoords,
             xcoords_start=sim.scan.xcoords, ycoords_start=sim.scan.ycoords, diff3d=counts,
             bad_pixels=np.zeros((N, N), bool), probeGuess=sim.scan.probe[None],
             objectGuess=sim.scan.object_guess, scan_index=np.zeros(N_POSITIONS, dtype=int))
    raw = RawData.from_file(path)
    np.testing.assert_allclose(raw.diff3d, np.sqrt(counts.astype(np.float64)), rtol=1e-6)
    assert raw.probeGuess.shape == (N, N)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_nsamples_1_covers_every_position(sim, counts, gridsize):
    raw = _raw(sim, counts)
    grouped = raw.generate_grouped_data(N, K=7, nsamples=1, gridsize=gridsize)
    channels = gridsize ** 2
    assert grouped["X_full"].shape == (N_POSITIONS, N, N, channels)
    assert grouped["coords_relative"].shape == (N_POSITIONS, 1, 2, channels)
    assert grouped["coords_offsets"].shape == (N_POSITIONS, 1, 2, 1)
    assert set(grouped["nn_indices"].ravel()) == set(range(N_POSITIONS))
    np.testing.assert_array_equal(grouped["nn_indices"][:, 0], np.arange(N_POSITIONS))


def test_nsamples_above_positions_oversamples(sim, counts):
    raw = _raw(sim, counts)
    assert len(raw.generate_grouped_data(N, K=7, nsamples=50, gridsize=2)["X_full"]) == 50
    assert len(raw.generate_grouped_data(N, K=7, nsamples=50, gridsize=1)["X_full"]) == N_POSITIONS


def test_gridsize_defaults_to_params_cfg(sim, counts):
    raw = _raw(sim, counts)
    params.set("gridsize", 2)
    try:
        assert raw.generate_grouped_data(N, K=4, nsamples=1)["X_full"].shape[-1] == 4
    finally:
        params.cfg.pop("gridsize")


def test_generate_grouped_data_rejects_wrong_N(sim, counts):
    with pytest.raises(InputError, match="patch size mismatch"):
        _raw(sim, counts).generate_grouped_data(128, nsamples=1, gridsize=1)


# ------------------------------------------------------------------------------------------
# loader, probe, tf_helper, model
# ------------------------------------------------------------------------------------------


def test_loader_container_is_numpy(sim, counts):
    import ptycho.loader

    raw = _raw(sim, counts)
    grouped = raw.generate_grouped_data(N, K=7, nsamples=1, gridsize=2)
    container = ptycho.loader.load(lambda: grouped, raw.probeGuess, which=None,
                                   create_split=False)
    for name, shape in (("X", (N_POSITIONS, N, N, 4)), ("local_offsets", (N_POSITIONS, 1, 2, 4)),
                        ("global_offsets", (N_POSITIONS, 1, 2, 1))):
        value = getattr(container, name)
        assert isinstance(value, np.ndarray), name
        assert value.shape == shape, name
    np.testing.assert_array_equal(container.X, grouped["X_full"])
    assert container.probe.shape == (N, N)


def test_loader_split(sim, counts):
    import ptycho.loader

    raw = _raw(sim, counts)
    grouped = raw.generate_grouped_data(N, nsamples=1, gridsize=1)
    train = ptycho.loader.load(lambda: (grouped, 0.75), raw.probeGuess, "train", True)
    test = ptycho.loader.load(lambda: (grouped, 0.75), raw.probeGuess, "test", True)
    assert len(train) == 27 and len(test) == 9


def test_set_probe_guess_records_mode_0(sim):
    import ptycho.probe

    modes = np.stack([sim.scan.probe, 2 * sim.scan.probe])
    returned = ptycho.probe.set_probe_guess(None, modes)
    assert returned.shape == (N, N, 1)
    np.testing.assert_array_equal(params.cfg["probe"][..., 0], modes[0].astype(np.complex64))


def test_reassemble_position_returns_complex_2d():
    import torch

    import ptycho.tf_helper

    rng = np.random.default_rng(0)
    patches = (rng.random((9, N, N, 1)) + 1j * rng.random((9, N, N, 1))).astype(np.complex64)
    yy, xx = np.meshgrid(np.arange(3) * 6.0 + 50, np.arange(3) * 6.0 + 50, indexing="ij")
    offsets = np.stack([xx.ravel(), yy.ravel()], axis=1).reshape(9, 1, 2, 1)
    image = ptycho.tf_helper.reassemble_position(patches, offsets, M=20)
    assert np.iscomplexobj(image)
    assert np.squeeze(image).ndim == 2
    from_tensor = ptycho.tf_helper.reassemble_position(torch.from_numpy(patches),
                                                       torch.from_numpy(offsets), M=20)
    np.testing.assert_array_equal(from_tensor, image)


def test_model_params_for_older_ptychodus():
    import ptycho.model

    params.set("intensity_scale", 3.5)
    assert ptycho.model.params()["intensity_scale"] == 3.5


def test_facades_import_no_backend():
    """Parent-safe modules and the cheap ``ptycho.model`` load no torch/lightning/tensorflow."""
    code = (
        "import sys\n"
        "import ptycho.config.config, ptycho.params, ptycho.model, ptycho.raw_data\n"
        "import ptycho.loader, ptycho.probe, ptycho.tf_helper, ptycho.model_manager\n"
        "import ptycho.workflows.components\n"
        "assert ptycho.probe is sys.modules['ptycho.probe']\n"
        "print('HEAVY', [n for n in ('torch', 'lightning', 'tensorflow', 'keras') "
        "if n in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HEAVY []" in proc.stdout


# ------------------------------------------------------------------------------------------
# run_cdi_example, model_manager, save_outputs, load_inference_bundle
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sim, counts):
    """Train as ptychodus's child does: N=0, output_dir=Path(), in an empty working dir."""
    from ptycho import model_manager
    from ptycho.config.config import ModelConfig, TrainingConfig, update_legacy_dict
    from ptycho.raw_data import RawData
    from ptycho.workflows.components import run_cdi_example

    root = tmp_path_factory.mktemp("compat_train")
    cwd = root / "cwd"
    cwd.mkdir()
    config = TrainingConfig(model=ModelConfig(N=0, gridsize=1, n_filters_scale=1),
                            train_data_file=Path(), batch_size=16, nepochs=1, nphotons=1e5,
                            output_dir=Path())
    train = RawData.from_scan(sim.scan)
    test = _raw(sim, counts)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        update_legacy_dict(params.cfg, config)
        amp, phase, results = run_cdi_example(train, test, config)
        left_in_cwd = sorted(p.name for p in cwd.iterdir())
        out = root / "out"
        saved = model_manager.save(out)
        left_after_save = sorted(p.name for p in cwd.iterdir())
    return {"amp": amp, "phase": phase, "results": results, "config": config, "root": root,
            "out": out, "saved": saved, "cwd_listing": left_in_cwd,
            "cwd_after_save": left_after_save}


def test_run_cdi_example_writes_nothing_to_cwd(trained):
    assert trained["cwd_listing"] == []
    assert trained["cwd_after_save"] == []


def test_run_cdi_example_results(trained):
    results = trained["results"]
    assert trained["config"].model.N == N  # fixed from the data
    assert trained["amp"].ndim == 2 and trained["amp"].shape == trained["phase"].shape
    assert np.all(np.isfinite(trained["amp"]))
    assert {"history", "intensity_scale", "model"} <= set(results)
    assert results["history"]["epoch"] == [0]
    assert params.cfg["intensity_scale"] == pytest.approx(results["intensity_scale"])
    assert params.cfg["N"] == N


def test_run_cdi_example_without_test_data(sim):
    """No test data: (None, None, results) and still no files anywhere."""
    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.workflows.components import run_cdi_example

    config = TrainingConfig(model=ModelConfig(N=0, n_filters_scale=1), nepochs=1, batch_size=32,
                            output_dir=Path())
    small = sim.scan.subset(np.arange(12))
    cwd = os.getcwd()
    before = sorted(os.listdir(cwd))
    amp, phase, results = run_cdi_example(small, None, config)
    assert amp is None and phase is None and "model" in results
    assert sorted(os.listdir(cwd)) == before


def test_model_manager_saves_exactly_wts_h5_zip(trained):
    assert trained["saved"] == trained["out"] / "wts.h5.zip"
    assert sorted(p.name for p in trained["out"].iterdir()) == ["wts.h5.zip"]
    assert zipfile.is_zipfile(trained["saved"])


def test_model_manager_without_training_raises():
    from ptycho import model_manager

    state = dict(model_manager._state)
    model_manager.clear()
    try:
        with pytest.raises(model_manager.NoTrainedModelError):
            model_manager.save("unused")
    finally:
        model_manager._state.update(state)
    assert not Path("unused").exists()


@pytest.mark.parametrize("prefix", [Path(), ".", "", None])
def test_save_outputs_writes_nothing_without_a_folder(tmp_path, monkeypatch, trained, prefix):
    from ptycho.workflows.components import save_outputs

    monkeypatch.chdir(tmp_path)
    assert save_outputs(trained["amp"], trained["phase"], trained["results"], prefix) == []
    assert list(tmp_path.iterdir()) == []


def test_save_outputs_into_a_folder(tmp_path, trained):
    from ptycho.workflows.components import save_outputs

    written = save_outputs(trained["amp"], trained["phase"], trained["results"],
                           str(tmp_path / "o"))
    names = sorted(p.name for p in written)
    assert names == sorted(["history.csv", "loss_curve.png", "reconstruction.npz",
                            "reconstructed_amplitude.png", "reconstructed_phase.png"])
    assert save_outputs(None, None, None, tmp_path / "empty") == []


def _bundle_locations(trained):
    out = trained["out"]
    extracted = trained["root"] / "extracted"
    if not extracted.exists():
        with zipfile.ZipFile(out / "wts.h5.zip") as archive:
            archive.extractall(extracted)
    nested = trained["root"] / "nested"
    if not nested.exists():
        # a user's zip of the whole output folder, extracted by ptychodus's "Open Model"
        (nested / "out").mkdir(parents=True)
        (nested / "out" / "wts.h5.zip").write_bytes((out / "wts.h5.zip").read_bytes())
    return {"folder": out, "archive": out / "wts.h5.zip", "extracted": extracted,
            "nested": nested}


@pytest.mark.parametrize("where", ["folder", "archive", "extracted", "nested"])
def test_load_inference_bundle(trained, where):
    from ptycho.workflows.components import load_inference_bundle

    path = _bundle_locations(trained)[where]
    params.cfg.pop("intensity_scale", None)
    model, cfg = load_inference_bundle(path)
    scale = trained["results"]["intensity_scale"]
    assert params.get("intensity_scale") == pytest.approx(scale)
    assert cfg["intensity_scale"] == pytest.approx(scale)
    assert cfg["N"] == N and cfg["gridsize"] == 1
    x = np.zeros((2, N, N, 1), np.float32)
    offsets = np.zeros((2, 1, 2, 1))
    out = model.predict([x, offsets])
    assert out.shape == (2, N, N, 1) and np.iscomplexobj(out)


def test_load_inference_bundle_missing(tmp_path):
    from ptycho.workflows.components import load_inference_bundle

    with pytest.raises(InputError, match="no model archive"):
        load_inference_bundle(tmp_path)


def test_ptychodus_reconstruct_sequence(trained, sim, counts):
    """The exact call sequence of ptychodus 1.7.0's run_reconstruct, in process."""
    import ptycho.loader
    import ptycho.probe
    import ptycho.tf_helper
    from ptycho.config.config import InferenceConfig, ModelConfig, update_legacy_dict
    from ptycho.raw_data import RawData
    from ptycho.workflows.components import load_inference_bundle

    config = InferenceConfig(model=ModelConfig(N=N, gridsize=1), model_path=Path(),
                             test_data_file=Path(), debug=False, output_dir=Path())
    params.cfg.clear()
    update_legacy_dict(ptycho.params.cfg, config)
    model, _ = load_inference_bundle(_bundle_locations(trained)["extracted"])
    raw = RawData.from_coords_without_pc(
        xcoords=sim.scan.xcoords, ycoords=sim.scan.ycoords, diff3d=counts,
        probeGuess=sim.scan.probe[None].astype(np.complex128),
        scan_index=np.zeros(N_POSITIONS, dtype=int), objectGuess=sim.scan.object_guess)
    ptycho.probe.set_probe_guess(None, raw.probeGuess)
    grouped = raw.generate_grouped_data(config.model.N, K=7, nsamples=1,
                                        gridsize=config.model.gridsize)
    container = ptycho.loader.load(lambda: grouped, raw.probeGuess, which=None,
                                   create_split=False)
    scale = ptycho.params.get("intensity_scale")
    patches = model.predict([container.X * scale, container.local_offsets])
    image = ptycho.tf_helper.reassemble_position(patches, container.global_offsets, M=20)
    image = np.squeeze(image)
    assert image.ndim == 2 and np.iscomplexobj(image)
    # the same object as the training workflow's own reconstruction of this scan
    np.testing.assert_allclose(np.abs(image), trained["amp"], rtol=1e-4, atol=1e-5)


def test_gridsize_mismatch_message(trained, sim, counts):
    from ptycho.workflows.components import load_inference_bundle

    model, _ = load_inference_bundle(trained["out"])
    grouped = _raw(sim, counts).generate_grouped_data(N, K=7, nsamples=1, gridsize=2)
    with pytest.raises(InputError) as info:
        model.predict([grouped["X_full"] * params.get("intensity_scale"),
                       grouped["coords_relative"]])
    message = str(info.value)
    assert "gridsize mismatch" in message
    assert "gridsize 1" in message and "gridsize 2" in message
    assert "GridSize to 1" in message
    assert isinstance(info.value, ValueError)
    # everything else is the backend model's
    assert model.model_config.gridsize == 1
    assert model.intensity_scale == pytest.approx(params.get("intensity_scale"))
    assert model.probe.shape == (N, N)


def test_components_exposes_probe_and_tf_helper():
    import ptycho.workflows.components

    assert hasattr(ptycho, "probe") and hasattr(ptycho, "tf_helper")
