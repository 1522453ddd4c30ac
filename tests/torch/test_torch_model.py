"""PyTorch model: architecture, trainable physics parameters, save/load, object_big batching."""

import dataclasses

import numpy as np
import pytest
import torch

from ptycho import physics
from ptycho.archive import read_archive, write_archive
from ptycho.backends.pytorch import load_model, train_model
from ptycho.backends.pytorch.model import PtychoPINN
from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptycho.data.grouping import GroupedData

QUIET = ExecutionConfig(progress_bar=False, logger="none", accelerator="cpu")


@pytest.mark.parametrize("kwargs, expected", [
    ({}, 2_331_772),
    ({"gridsize": 2}, 2_340_208),
    ({"gridsize": 2, "object_big": False}, 2_333_500),
    ({"architecture": "unet"}, 2_777_596),
    ({"architecture": "unet", "gridsize": 2}, 2_796_400),
    ({"architecture": "unet", "gridsize": 2, "object_big": False}, 2_779_324),
    ({"architecture": "resnet"}, 2_331_772),
    ({"architecture": "resnet", "gridsize": 2}, 2_340_208),
    ({"architecture": "resnet", "gridsize": 2, "object_big": False}, 2_333_500),
    ({"architecture": "ffno"}, 1_090_692),
    ({"architecture": "ffno", "gridsize": 2}, 1_091_664),
    ({"architecture": "ffno", "gridsize": 2, "object_big": False}, 1_090_884),
    ({"architecture": "ffno", "pad_object": False}, 1_090_562),
])
def test_parameter_count_matches_reference(kwargs, expected):
    """cnn: 2,331,772 at N=64, s=2, gs=1 (TensorFlow reference); unet: 2,777,596 (the skips
    add 445,824 input-channel weights; same in the Keras model, tests/tensorflow); resnet:
    2,331,772, the cnn's parameters exactly (the residual sums add none); ffno: 1,090,692
    (width 64, 16 modes: 4 x 262,144 spectral weights, 4 x 8,320 feed-forward, lift, two
    projections and heads)."""
    model = PtychoPINN(ModelConfig(N=64, **kwargs), physics.default_probe(64), 10.0,
                       intensity_scale_trainable=False)
    generator_params = sum(p.numel() for p in model.generator.parameters())
    assert generator_params == expected


@pytest.mark.parametrize("N", [128, 256])
def test_larger_patches_build_and_run(N):
    model = PtychoPINN(ModelConfig(N=N, n_filters_scale=1), physics.default_probe(N), 10.0)
    out = model(torch.rand(2, 1, N, N), torch.zeros(2, 1, 2))
    assert out.amplitude.shape == (2, 1, N, N)
    assert torch.all(out.amplitude >= 0)


def _train(scan, tmp_path, **overrides):
    model_kw = {k: overrides.pop(k) for k in list(overrides) if k in
                {f.name for f in dataclasses.fields(ModelConfig)}}
    overrides.setdefault("batch_size", 16)
    config = TrainingConfig(model=ModelConfig(N=64, **model_kw), nepochs=1, output_dir=tmp_path,
                            **overrides)
    grouped = GroupedData.from_scan(scan, config.model.gridsize, n_groups=config.n_groups)
    probe = physics.normalize_probe(scan.probe, config.model.probe_scale)
    scale = physics.intensity_scale(scan.mean_photons_per_pattern(), 64)
    return train_model(grouped, None, probe, scale, config, QUIET, tmp_path), probe, scale


@pytest.mark.parametrize("trainable", [True, False])
def test_intensity_scale_and_probe_train_only_when_trainable(small_scan, tmp_path, trainable):
    model, probe, scale = _train(small_scan, tmp_path, probe_trainable=trainable,
                                 intensity_scale_trainable=trainable, n_groups=48)
    scale_changed = not np.isclose(model.intensity_scale, scale, rtol=1e-7, atol=0)
    probe_changed = not np.allclose(model.probe, probe.astype(np.complex64), rtol=0, atol=1e-7)
    assert scale_changed == trainable
    assert probe_changed == trainable


@pytest.mark.parametrize("batch_size", [16, 32])
def test_gridsize2_object_big_trains_and_predicts_one_object_per_input(small_scan, tmp_path,
                                                                       batch_size):
    model, _, scale = _train(small_scan, tmp_path, gridsize=2, batch_size=batch_size, n_groups=64)
    grouped = GroupedData.from_scan(small_scan, 2)
    x = grouped.X(slice(0, 40)) * np.float32(scale)
    out = model.predict([x, grouped.coords(slice(0, 40))["relative"]], batch_size=batch_size)
    assert out.shape == (40, 64, 64, 1)
    assert out.dtype == np.complex64
    assert np.isfinite(out).all()


def test_saved_and_reloaded_model_predicts_identically(small_scan, tmp_path):
    model, _, _ = _train(small_scan, tmp_path, probe_trainable=True)
    config = TrainingConfig(model=model.model_config, output_dir=tmp_path)
    write_archive(tmp_path, model, config, nphotons=1e5)
    archive = read_archive(tmp_path)
    reloaded = load_model(archive.manifest, archive.payload, archive.probe)
    grouped = GroupedData.from_scan(small_scan, 1)
    inputs = [grouped.X() * np.float32(model.intensity_scale), grouped.coords()["relative"]]
    assert np.abs(model.predict(inputs) - reloaded.predict(inputs)).max() <= 1e-6
    assert reloaded.intensity_scale == pytest.approx(model.intensity_scale, rel=1e-7)
    np.testing.assert_array_equal(reloaded.probe, model.probe)


def test_predict_rejects_wrong_gridsize(small_scan, tmp_path):
    from ptycho.errors import InputError

    model, _, scale = _train(small_scan, tmp_path, n_groups=32)
    grouped = GroupedData.from_scan(small_scan, 2)
    with pytest.raises(InputError, match="gridsize"):
        model.predict([grouped.X() * scale, grouped.coords()["relative"]])


@pytest.mark.parametrize("gridsize", [1, 2])
def test_central_only_predict_is_exact_in_the_central_box(small_scan, gridsize):
    from ptycho.backends.pytorch.trained_model import TorchTrainedModel
    from ptycho_testing import check_central_only_predict

    torch.manual_seed(0)
    check_central_only_predict(TorchTrainedModel(PtychoPINN(
        ModelConfig(N=64, gridsize=gridsize), physics.default_probe(64), 10.0)), small_scan, gridsize)


@pytest.mark.parametrize("c_in, c_out, c_skip", [(64, 1, 0), (5, 3, 0), (5, 3, 7)])
def test_conv_after_upsample_equals_conv_of_the_upsampled_map(c_in, c_out, c_skip):
    """Values and gradients (input, weight, bias) of the phase form match upsample + conv;
    with a unet skip, conv of [upsampled input, skip] concatenated on the channel axis."""
    from torch.nn import functional as F

    from ptycho.backends.pytorch.network import _conv, conv_after_upsample

    torch.manual_seed(0)
    conv = _conv(c_in + c_skip, c_out).double()
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, c_in, 6, 9, dtype=torch.float64, requires_grad=True)
    skip = torch.randn(2, c_skip, 12, 18, dtype=torch.float64) if c_skip else None
    results = []
    for fn in (lambda x: conv(torch.cat([F.interpolate(x, scale_factor=2, mode="nearest")]
                                        + ([skip] if c_skip else []), 1)),
               lambda x: conv_after_upsample(x, conv, skip)):
        conv.zero_grad()
        x.grad = None
        out = fn(x)
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
        (out * weights).sum().backward()
        results.append([out.detach().clone(), x.grad.clone(), conv.weight.grad.clone(),
                        conv.bias.grad.clone()])
    assert results[0][0].shape == (2, c_out, 12, 18)
    for reference, phase in zip(*results):
        np.testing.assert_allclose(phase.numpy(), reference.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("gridsize, architecture",
                         [(1, "cnn"), (2, "cnn"), (1, "unet"), (1, "resnet")])
def test_every_convolution_runs_channels_last(gridsize, architecture):
    """Every convolution output is channels-last (NHWC): oneDNN's NCHW path trains about 1.6x
    slower on CPU, and a layer falling back to it would convert its neighbours' tensors too."""
    model = PtychoPINN(ModelConfig(N=64, gridsize=gridsize, architecture=architecture),
                       physics.default_probe(64), 10.0)
    layouts = []
    hooks = [module.register_forward_hook(
        lambda module, inputs, output: layouts.append(
            output.is_contiguous(memory_format=torch.channels_last) and output.stride(1) == 1))
        for module in model.generator.modules() if isinstance(module, torch.nn.Conv2d)]
    with torch.no_grad():
        model.object_patches(torch.rand(2, gridsize ** 2, 64, 64))
    for hook in hooks:
        hook.remove()
    assert layouts and all(layouts)


def test_training_works_after_a_first_forward_under_inference_mode():
    """The cached phase taps of conv_after_upsample must not be inference tensors."""
    from ptycho.backends.pytorch import network

    network._phase_taps.cache_clear()
    model = PtychoPINN(ModelConfig(N=64), physics.default_probe(64), 10.0)
    x, rel = torch.rand(2, 1, 64, 64), torch.zeros(2, 1, 2)
    with torch.inference_mode():
        model(x, rel)
    model(x, rel).amplitude.sum().backward()
    assert model.generator.amplitude.border_head.weight.grad is not None


def _upsample_then_conv(y, conv, skip=None):
    from torch.nn import functional as F

    up = F.interpolate(y, scale_factor=2, mode="nearest")
    return conv(up if skip is None else torch.cat([up, skip], 1))


@pytest.mark.parametrize("pad_object, architecture",
                         [(True, "cnn"), (False, "cnn"), (True, "unet"), (False, "unet"),
                          (True, "resnet"), (False, "resnet")])
def test_generator_equals_its_upsample_then_conv_form(monkeypatch, pad_object, architecture):
    """The border head (pad_object) and the full-resolution head (not) use the phase form
    (unet: of the upsampled features concatenated with the level-0 encoder map)."""
    from ptycho.backends.pytorch import network

    torch.manual_seed(0)
    model = PtychoPINN(ModelConfig(N=64, pad_object=pad_object, architecture=architecture),
                       physics.default_probe(64), 1.0)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        phase_form = model.generator(x)
        monkeypatch.setattr(network, "conv_after_upsample", _upsample_then_conv)
        reference = model.generator(x)
    for got, want in zip(phase_form, reference):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5)
    assert float(reference[0].abs().max()) > 0


@pytest.mark.parametrize("architecture, N, gridsize",
                         [("unet", 64, 1), ("unet", 64, 2), ("unet", 128, 1),
                          ("resnet", 64, 1), ("resnet", 64, 2), ("resnet", 128, 1),
                          ("ffno", 64, 1), ("ffno", 64, 2), ("ffno", 128, 1)])
def test_unet_resnet_and_ffno_forward_shapes(architecture, N, gridsize):
    channels = gridsize ** 2
    model = PtychoPINN(ModelConfig(N=N, gridsize=gridsize, n_filters_scale=1,
                                   architecture=architecture), physics.default_probe(N), 10.0)
    out = model(torch.rand(2, channels, N, N), torch.zeros(2, channels, 2))
    assert out.patches.shape == (2, channels, N, N)
    assert out.amplitude.shape == (2, channels, N, N)
    assert torch.isfinite(out.amplitude).all()


def test_unet_wiring_matches_its_description():
    """N=64, pad_object, probe_big, written out with plain upsampling and concatenation:
    encoder maps e0 (64 px), e1 (32), e2 (16); block 1 <- e2, centre head and border_up <- e1,
    border head <- e0; always [decoder features, encoder skip]."""
    from torch.nn import functional as F

    torch.manual_seed(1)
    generator = PtychoPINN(ModelConfig(N=64, n_filters_scale=1, architecture="unet"),
                           physics.default_probe(64), 1.0).generator
    x = torch.rand(2, 1, 64, 64)

    def up(t):
        return F.interpolate(t, scale_factor=2, mode="nearest")

    def cat(*tensors):
        return torch.cat(tensors, 1)

    with torch.no_grad():
        e0 = generator.encoder[0].features(x)
        e1 = generator.encoder[1].features(F.max_pool2d(e0, 2))
        e2 = generator.encoder[2].features(F.max_pool2d(e1, 2))
        bottleneck = F.max_pool2d(e2, 2)
        got = generator(x)
        for branch, output in zip((generator.amplitude, generator.phase), got):
            d = up(branch.blocks[0].features(bottleneck))
            d = up(branch.blocks[1].features(cat(d, e2)))
            centre = branch._head_activation(branch.head(cat(d[:, :-4], e1)))
            border = F.silu(branch.border_head(cat(up(branch.border_up.features(
                cat(d[:, -4:], e1))), e0)))
            expected = F.pad(centre, (16, 16, 16, 16)) + border * branch.border_mask
            np.testing.assert_allclose(output.numpy(), expected.numpy(), rtol=0, atol=1e-5)
    assert generator.amplitude.blocks[1].conv1.in_channels == 64 + 128
    assert generator.amplitude.head.in_channels == 32 - 4 + 64
    assert generator.phase.border_up.conv1.in_channels == 4 + 64
    assert generator.phase.border_head.in_channels == 32 + 32


@pytest.mark.parametrize("pad_object", [True, False])
def test_resnet_wiring_matches_its_description(pad_object):
    """Every level of resnet is ``h = relu(conv1(x)); relu(h + conv2(h))`` (encoder, decoder
    blocks, border_up / full_up), written out here with plain upsampling; the heads are the
    cnn's. Same modules as cnn: a cnn state dict loads into it key for key."""
    from torch.nn import functional as F

    torch.manual_seed(3)
    cfg = ModelConfig(N=64, n_filters_scale=1, pad_object=pad_object, architecture="resnet")
    generator = PtychoPINN(cfg, physics.default_probe(64), 1.0).generator
    cnn = PtychoPINN(ModelConfig(N=64, n_filters_scale=1, pad_object=pad_object),
                     physics.default_probe(64), 1.0).generator
    cnn.load_state_dict(generator.state_dict())
    x = torch.rand(2, 1, 64, 64)

    def level(block, t):
        h = torch.relu(block.conv1(t))
        return torch.relu(h + block.conv2(h))

    def up(t):
        return F.interpolate(t, scale_factor=2, mode="nearest")

    with torch.no_grad():
        e = x
        for block in generator.encoder:
            e = F.max_pool2d(level(block, e), 2)
        got = generator(x)
        for branch, output in zip((generator.amplitude, generator.phase), got):
            d = e
            for block in branch.blocks:
                d = up(level(block, d))
            if pad_object:
                centre = branch._head_activation(branch.head(d[:, :-4]))
                border = F.silu(branch.border_head(up(level(branch.border_up, d[:, -4:]))))
                expected = F.pad(centre, (16, 16, 16, 16)) + border * branch.border_mask
            else:
                expected = branch._head_activation(branch.head(up(level(branch.full_up, d))))
            np.testing.assert_allclose(output.numpy(), expected.numpy(), rtol=0, atol=1e-5)
        assert not np.allclose(cnn(x)[0].numpy(), got[0].numpy(), atol=1e-3)


@pytest.mark.parametrize("pad_object, probe_big", [(True, True), (True, False), (False, True)])
def test_ffno_wiring_matches_its_description(pad_object, probe_big):
    """ffno (backends.architecture.ffno_sizes) written out with torch.fft: lift of
    [log1p(x), row, col], per layer ``h + ff2(gelu(ff1(irfft(W * rfft(h)) along y + along x)))``
    with the lowest N/4 frequencies, then per branch gelu(project) and the 1x1 heads with the
    cnn's pad_object / probe_big rule."""
    from torch.nn import functional as F

    from ptycho.backends.architecture import position_grid

    torch.manual_seed(4)
    cfg = ModelConfig(N=64, gridsize=2, n_filters_scale=1, pad_object=pad_object,
                      probe_big=probe_big, architecture="ffno")
    generator = PtychoPINN(cfg, physics.default_probe(64), 1.0).generator
    x = 3.0 * torch.rand(2, 4, 64, 64)

    def pointwise(layer, t):
        return F.linear(t, layer.weight[:, :, 0, 0], layer.bias)

    def spectral(axis, t, dim):
        weight = torch.complex(axis.weight_real, axis.weight_imag)     # (C, O, modes)
        modes = weight.shape[-1]
        spectrum = torch.fft.rfft(t, dim=dim).narrow(dim, 0, modes)
        mixed = torch.einsum("...c,co...->...o", spectrum.movedim(dim, -2), weight)
        return torch.fft.irfft(mixed.movedim(-2, dim), n=64, dim=dim)

    grid = torch.tensor(position_grid(64))
    rows, cols = torch.meshgrid(grid, grid, indexing="ij")
    positions = torch.stack([rows, cols], -1).expand(2, -1, -1, -1)
    with torch.no_grad():
        got = generator(x.contiguous(memory_format=torch.channels_last))
        h = pointwise(generator.lift, torch.cat([torch.log1p(x.permute(0, 2, 3, 1)),
                                                 positions], -1))
        assert len(generator.layers) == 4 and generator.layers[0].fourier_x.weight_real.shape \
            == (32, 32, 16)
        for layer in generator.layers:
            s = spectral(layer.fourier_y, h, 1) + spectral(layer.fourier_x, h, 2)
            h = h + pointwise(layer.ff2, F.gelu(pointwise(layer.ff1, s)))
        for branch, output in zip((generator.amplitude, generator.phase), got):
            features = F.gelu(pointwise(branch.project, h))
            full = branch._head_activation(pointwise(branch.head, features))
            if pad_object:
                box = torch.zeros(64, 64, 1)
                box[16:48, 16:48] = 1.0
                expected = full * box
                if probe_big:
                    expected = expected + F.silu(pointwise(branch.border_head, features)) * (1 - box)
            else:
                expected = full
            assert output.shape == (2, 4, 64, 64)
            np.testing.assert_allclose(output.numpy(), expected.permute(0, 3, 1, 2).numpy(),
                                       rtol=0, atol=2e-5)


def test_ffno_output_pixels_see_the_whole_pattern():
    """The point of ffno: one output pixel depends on every input pixel (two factorised layers
    already span the plane), where the cnn's output at (20, 20) ignores the input beyond pixel
    53 in each direction (its encoder is local)."""
    torch.manual_seed(5)
    seen = {}
    for architecture in ("ffno", "cnn"):
        generator = PtychoPINN(ModelConfig(N=64, n_filters_scale=1, architecture=architecture),
                               physics.default_probe(64), 1.0).generator
        x = torch.rand(1, 1, 64, 64, requires_grad=True)
        amplitude, phase = generator(x)
        (amplitude[0, 0, 20, 20] + phase[0, 0, 20, 20]).backward()
        seen[architecture] = int((x.grad != 0).sum())
    assert seen["ffno"] == 64 * 64
    assert seen["cnn"] <= 54 * 54


@pytest.mark.parametrize("gridsize, architecture", [(1, "unet"), (2, "unet"), (2, "resnet"),
                                                    (1, "ffno")])
def test_unet_central_only_predict_is_exact_in_the_central_box(small_scan, gridsize,
                                                               architecture):
    from ptycho.backends.pytorch.trained_model import TorchTrainedModel
    from ptycho_testing import check_central_only_predict

    torch.manual_seed(0)
    check_central_only_predict(TorchTrainedModel(PtychoPINN(
        ModelConfig(N=64, gridsize=gridsize, n_filters_scale=1, architecture=architecture),
        physics.default_probe(64), 10.0)), small_scan, gridsize)


def _rewrite_manifest(folder, change) -> None:
    import json
    import zipfile

    path = folder / "wts.h5.zip"
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members["manifest.json"])
    change(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("architecture", ["unet", "resnet", "ffno", "cnn"])
def test_archive_round_trip_keeps_the_architecture(small_scan, tmp_path, architecture):
    """The manifest records the architecture; a cnn archive without the field (written before
    it existed) loads as cnn and predicts identically."""
    from ptycho.backends.pytorch.trained_model import TorchTrainedModel

    torch.manual_seed(2)
    cfg = ModelConfig(N=64, n_filters_scale=1, architecture=architecture)
    model = TorchTrainedModel(PtychoPINN(cfg, physics.default_probe(64), 10.0))
    write_archive(tmp_path, model, TrainingConfig(model=cfg), nphotons=1e5)
    assert read_archive(tmp_path).manifest["model_config"]["architecture"] == architecture
    if architecture == "cnn":
        _rewrite_manifest(tmp_path, lambda m: m["model_config"].pop("architecture"))
        assert "architecture" not in read_archive(tmp_path).manifest["model_config"]
    archive = read_archive(tmp_path)
    reloaded = load_model(archive.manifest, archive.payload, archive.probe)
    assert reloaded.model_config.architecture == architecture
    grouped = GroupedData.from_scan(small_scan, 1)
    inputs = [grouped.X(slice(0, 8)) * np.float32(10.0), grouped.coords(slice(0, 8))["relative"]]
    np.testing.assert_array_equal(reloaded.predict(inputs), model.predict(inputs))
