"""Keras model: architecture (parameter counts, torch layer mapping), predict, save/load."""

import dataclasses

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ptycho.backends.tensorflow")

from ptycho import physics
from ptycho.backends.tensorflow import PAYLOAD_NAME, TFTrainedModel, load_model
from ptycho.backends.tensorflow.model import PtychoPINN, torch_state_dict_mapping
from ptycho.backends.tensorflow.network import filter_ladder
from ptycho.config.config import ModelConfig
from ptycho.data.grouping import GroupedData
from ptycho.data.splitting import split_indices
from ptycho.errors import InputError


def _model(**kwargs) -> PtychoPINN:
    cfg = ModelConfig(**{"N": 64, **kwargs})
    return PtychoPINN(cfg, physics.default_probe(cfg.N), 10.0)


@pytest.mark.parametrize("kwargs, expected", [
    ({}, 2_331_772),
    ({"gridsize": 2}, 2_340_208),
    ({"gridsize": 2, "object_big": False}, 2_333_500),
    ({"N": 128}, 4_661_212),
    ({"architecture": "unet"}, 2_777_596),
    ({"architecture": "unet", "gridsize": 2}, 2_796_400),
    ({"architecture": "unet", "N": 128}, 5_437_084),
    ({"architecture": "resnet"}, 2_331_772),
    ({"architecture": "resnet", "gridsize": 2}, 2_340_208),
    ({"architecture": "resnet", "N": 128}, 4_661_212),
    ({"architecture": "ffno"}, 1_090_692),
    ({"architecture": "ffno", "gridsize": 2}, 1_091_664),
    ({"architecture": "ffno", "N": 128}, 2_139_268),
])
def test_parameter_count_matches_reference(kwargs, expected):
    """The torch counts (tests/torch): cnn 2,331,772, unet 2,777,596, resnet 2,331,772
    (the cnn's parameters) and ffno 1,090,692 at N=64, s=2, gs=1."""
    model = _model(**kwargs)
    assert model.count_generator_params() == expected
    n = model.model_config.N
    assert model.count_params() == expected + 1 + 2 * n * n      # + log_scale + probe_ri


def test_filter_ladder_and_default_initialisation():
    assert filter_ladder(64, 2) == ([64, 128, 256], [128, 64], 64)
    assert filter_ladder(256, 1) == ([8, 16, 32, 64, 128], [256, 128, 64, 32], 8)
    with pytest.raises(ValueError):
        filter_ladder(96, 2)
    model = _model()
    conv = model.generator.encoder[0].conv1
    assert np.all(conv.bias.numpy() == 0)
    fan = 9 * (1 + 64)
    assert np.abs(conv.kernel.numpy()).max() <= np.sqrt(6.0 / fan) + 1e-7


def test_layer_names_map_one_to_one_on_torch_keys():
    model = _model(gridsize=2)
    mapping = torch_state_dict_mapping(model)
    assert "generator.encoder.0.conv1.weight" in mapping
    assert "generator.amplitude.blocks.0.conv2.bias" in mapping
    assert "generator.amplitude.border_up.conv1.weight" in mapping
    assert "generator.phase.border_head.bias" in mapping
    # every Keras weight is mapped exactly once
    assert len({id(v) for v, _ in mapping.values()}) == len(model.weights) == len(mapping)
    kernel, layout = mapping["generator.encoder.0.conv1.weight"]
    assert layout == "conv_kernel" and tuple(kernel.shape) == (3, 3, 4, 64)
    full = torch_state_dict_mapping(_model(pad_object=False))
    assert "generator.amplitude.full_up.conv2.weight" in full
    assert not any("border" in key for key in full)
    unet = torch_state_dict_mapping(_model(gridsize=2, architecture="unet"))
    assert set(unet) == set(mapping)       # the same names; the skips widen some inputs
    assert tuple(unet["generator.amplitude.blocks.1.conv1.weight"][0].shape) == (3, 3, 128 + 256, 64)
    resnet = torch_state_dict_mapping(_model(gridsize=2, architecture="resnet"))
    assert ({k: tuple(v.shape) for k, (v, _) in resnet.items()}
            == {k: tuple(v.shape) for k, (v, _) in mapping.items()})     # the cnn's weights
    ffno_model = _model(gridsize=2, architecture="ffno")
    ffno = torch_state_dict_mapping(ffno_model)
    assert len({id(v) for v, _ in ffno.values()}) == len(ffno_model.weights) == len(ffno)
    assert ffno["generator.lift.weight"][1] == "conv_kernel"
    assert tuple(ffno["generator.lift.weight"][0].shape) == (1, 1, 4 + 2, 64)
    assert ffno["generator.layers.3.fourier_y.weight_real"][1] == "same"
    assert tuple(ffno["generator.layers.3.fourier_y.weight_real"][0].shape) == (64, 64, 16)
    assert "generator.phase.border_head.bias" in ffno


def _copy_torch_weights(torch_model, keras_model):
    state = torch_model.state_dict()
    mapping = torch_state_dict_mapping(keras_model)
    assert set(state) - {"illumination.mask"} == set(mapping)
    for key, (variable, layout) in mapping.items():
        value = state[key].detach().numpy()
        variable.assign(np.transpose(value, (2, 3, 1, 0)) if layout == "conv_kernel" else value)


@pytest.mark.parametrize("kwargs", [
    {},
    {"gridsize": 2},
    {"gridsize": 2, "object_big": False, "amp_activation": "swish"},
    {"pad_object": False, "probe_mask": True, "gaussian_smoothing_sigma": 0.7},
    {"architecture": "unet", "gridsize": 2},
    {"architecture": "unet", "pad_object": False},
    {"architecture": "resnet", "gridsize": 2},
    {"architecture": "resnet", "pad_object": False},
    {"architecture": "ffno", "gridsize": 2},
    {"architecture": "ffno", "pad_object": False, "amp_activation": "softplus"},
])
def test_forward_equals_torch_with_transferred_weights(rng, kwargs):
    """Same architecture and physics: copying the torch weights gives the same outputs."""
    torch = pytest.importorskip("torch")
    from ptycho.backends.pytorch.model import PtychoPINN as TorchPINN

    cfg = ModelConfig(N=64, n_filters_scale=1, **kwargs)
    channels = cfg.gridsize ** 2
    probe = physics.normalize_probe(physics.default_probe(64)).astype(np.complex64)
    torch.manual_seed(0)
    torch_model = TorchPINN(cfg, probe, 7.0)
    keras_model = PtychoPINN(cfg, probe, 3.0)
    _copy_torch_weights(torch_model, keras_model)

    x = (7.0 * rng.uniform(0, 2, (2, 64, 64, channels))).astype(np.float32)
    legacy = rng.uniform(-4, 4, (2, 1, 2, channels)).astype(np.float32)
    rel_torch = np.ascontiguousarray(np.transpose(legacy[:, 0], (0, 2, 1)))
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))),
                               torch.from_numpy(rel_torch))
    out = keras_model((tf.constant(x), tf.constant(legacy)))
    for name, key in (("patches", "patches"), ("member_patches", "member_patches"),
                      ("object_centre", "object_centre"), ("amplitude", "amplitude")):
        reference = np.moveaxis(getattr(expected, key).numpy(), 1, -1)
        error = np.abs(out[name].numpy() - reference).max() / np.abs(reference).max()
        assert error <= 1e-4, (name, error)


def test_predict_shape_and_wrong_gridsize_is_rejected(small_scan):
    model = TFTrainedModel(_model())
    grouped = GroupedData.from_scan(small_scan, 1)
    out = model.predict([grouped.X(slice(0, 10)) * np.float32(10.0),
                         grouped.coords(slice(0, 10))["relative"]], batch_size=4)
    assert out.shape == (10, 64, 64, 1) and out.dtype == np.complex64
    grouped2 = GroupedData.from_scan(small_scan, 2)
    with pytest.raises(InputError, match="gridsize"):
        model.predict([grouped2.X() * 10.0, grouped2.coords()["relative"]])


@pytest.mark.parametrize("architecture", ["cnn", "unet", "resnet", "ffno"])
def test_payload_round_trip_restores_every_weight(small_scan, architecture):
    cfg = ModelConfig(N=64, gridsize=2, architecture=architecture)
    probe = physics.normalize_probe(small_scan.probe).astype(np.complex64)
    module = PtychoPINN(cfg, probe, 10.0, probe_trainable=True)
    module.scaler.log_scale.assign(np.log(12.5))
    module.illumination.probe_ri.assign(module.illumination.probe_ri.numpy() * 1.5)
    model = TFTrainedModel(module, {"epoch": [0]})
    payload = model.payload_bytes()
    assert payload[:8] == b"\x89HDF\r\n\x1a\n" and model.payload_name == PAYLOAD_NAME
    manifest = {"model_config": dataclasses.asdict(cfg), "intensity_scale": 10.0}
    reloaded = load_model(manifest, payload, probe)
    assert reloaded.intensity_scale == pytest.approx(12.5, rel=1e-6)
    np.testing.assert_array_equal(reloaded.probe, model.probe)
    grouped = GroupedData.from_scan(small_scan, 2)
    inputs = [grouped.X(slice(0, 24)) * np.float32(12.5), grouped.coords(slice(0, 24))["relative"]]
    assert np.abs(model.predict(inputs, batch_size=16)
                  - reloaded.predict(inputs, batch_size=16)).max() <= 1e-6


def test_payload_for_another_configuration_is_refused(small_scan):
    from ptycho.errors import ArchiveError

    payload = TFTrainedModel(_model()).payload_bytes()
    manifest = {"model_config": dataclasses.asdict(ModelConfig(N=64, gridsize=2)),
                "intensity_scale": 10.0}
    with pytest.raises(ArchiveError):
        load_model(manifest, payload, physics.default_probe(64))
    unet = TFTrainedModel(_model(architecture="unet")).payload_bytes()
    manifest = {"model_config": dataclasses.asdict(ModelConfig(N=64)), "intensity_scale": 10.0}
    with pytest.raises(ArchiveError):     # a unet payload under a cnn manifest
        load_model(manifest, unet, physics.default_probe(64))


def test_split_indices_is_seeded_and_disjoint():
    train, val = split_indices(100, 0.05, seed=42)
    again_train, again_val = split_indices(100, 0.05, seed=42)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(val, again_val)
    assert len(val) == 5 and len(train) == 95
    assert set(train) | set(val) == set(range(100)) and not set(train) & set(val)
    assert len(split_indices(1, 0.5, 0)[1]) == 0
    assert len(split_indices(2, 0.9, 0)[0]) == 1


@pytest.mark.parametrize("gridsize, architecture",
                         [(1, "cnn"), (2, "cnn"), (2, "unet"), (2, "resnet"), (1, "ffno")])
def test_central_only_predict_is_exact_in_the_central_box(small_scan, gridsize, architecture):
    from ptycho_testing import check_central_only_predict

    check_central_only_predict(TFTrainedModel(_model(gridsize=gridsize, architecture=architecture)),
                               small_scan, gridsize)


@pytest.mark.parametrize("c_in, c_out, c_skip", [(64, 1, 0), (5, 3, 0), (5, 3, 7)])
def test_conv_after_upsample_equals_conv_of_the_upsampled_map(c_in, c_out, c_skip):
    """Values and gradients (input, kernel, bias) of the phase form match upsample + conv;
    with a unet skip, conv of [upsampled input, skip] concatenated on the channel axis."""
    from ptycho.backends.tensorflow.network import _conv, _upsample, conv_after_upsample

    rng = np.random.default_rng(0)
    conv = _conv(c_out, "probe_head")
    conv.build((None, 6, 9, c_in + c_skip))
    conv.bias.assign(rng.normal(size=c_out).astype(np.float32))
    x = tf.constant(rng.normal(size=(2, 6, 9, c_in)).astype(np.float32))
    skip = (tf.constant(rng.normal(size=(2, 12, 18, c_skip)).astype(np.float32))
            if c_skip else None)
    results = []
    for fn in (lambda x: conv(_upsample(x) if skip is None else
                              tf.concat([_upsample(x), skip], -1)),
               lambda x: conv_after_upsample(x, conv, skip)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = fn(x)
            weights = np.linspace(0.5, 1.5, out.shape.num_elements()).reshape(out.shape)
            loss = tf.reduce_sum(out * weights.astype(np.float32))
        results.append([out, *tape.gradient(loss, [x, conv.kernel, conv.bias])])
    assert tuple(results[0][0].shape) == (2, 12, 18, c_out)
    for reference, phase in zip(*results):
        scale = float(tf.reduce_max(tf.abs(reference))) + 1.0
        np.testing.assert_allclose(phase.numpy(), reference.numpy(), rtol=0, atol=2e-6 * scale)


@pytest.mark.parametrize("pad_object, architecture",
                         [(True, "cnn"), (False, "cnn"), (True, "unet"), (False, "unet"),
                          (True, "resnet"), (False, "resnet")])
def test_generator_equals_its_upsample_then_conv_form(monkeypatch, pad_object, architecture):
    """The border head (pad_object) and the full-resolution head (not) use the phase form
    (unet: of the upsampled features concatenated with the level-0 encoder map)."""
    from ptycho.backends.tensorflow import network

    def upsample_then_conv(y, conv, skip=None):
        up = network._upsample(y)
        return conv(up if skip is None else tf.concat([up, skip], -1))

    model = _model(pad_object=pad_object, architecture=architecture)
    x = tf.constant(np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32))
    phase_form = model.generator(x)
    monkeypatch.setattr(network, "conv_after_upsample", upsample_then_conv)
    reference = model.generator(x)
    for got, want in zip(phase_form, reference):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5)
    assert float(tf.reduce_max(tf.abs(reference[0]))) > 0
