"""The generators in Keras 3 (design section 4), layer for layer the torch ones.

Input ``(B, N, N, C)`` normalised amplitudes (channels-last); output ``(amplitude, phase)``
each ``(B, N, N, C_out)`` with ``C_out = C`` when ``object_big`` else 1. ``cnn``: no skip
connections; ``unet``: the same layers (same names), each decoder stage also reading the
encoder feature map of its size (:func:`ptycho.backends.architecture.skip_channels`; the
concatenation order ``[decoder features, encoder skip]`` on the channel axis, as in torch);
``resnet``: the same layers, each level a residual block
(:func:`ptycho.backends.architecture.residual_levels`); ``ffno``: :class:`FfnoGenerator`, a
factorised Fourier neural operator at full resolution (layer names below).
:func:`make_generator` builds the one ``config.architecture`` names.

Layer names and the torch mapping
---------------------------------
Every ``Conv2D`` is named with its module path inside the torch ``CnnGenerator``, so the torch
state-dict key of a Keras weight is ``"generator." + layer.name + ".weight"`` (kernel) or
``".bias"``::

    encoder.{i}.conv1, encoder.{i}.conv2             ConvBlock i, 'pool' (i = 0 .. len(encoder)-1)
    {branch}.blocks.{j}.conv1, {branch}.blocks.{j}.conv2     ConvBlock j of the decoder, 'up'
    {branch}.head                                    output head (all configurations)
    {branch}.border_up.conv1, {branch}.border_up.conv2, {branch}.border_head
                                                     probe_big border branch (pad_object)
    {branch}.full_up.conv1, {branch}.full_up.conv2   pad_object=False full-resolution branch

with ``branch`` in ``amplitude``, ``phase``. Tensor layouts::

    torch Conv2d.weight (out, in, 3, 3)  <->  keras Conv2D.kernel (3, 3, in, out)
        keras = torch.permute(2, 3, 1, 0);  torch = keras.transpose(3, 2, 0, 1)
    torch Conv2d.bias (out,)             <->  keras Conv2D.bias (out,)

Kernels are correlations in both frameworks with 'same' padding of 1 pixel, so no flip is
needed. :func:`ptycho.backends.tensorflow.model.torch_state_dict_mapping` builds the full map
(including ``scaler.log_scale`` and ``illumination.probe_ri``) from each generator's
``torch_weights()``.

The ``ffno`` generator's 1x1 ``Conv2D`` layers and spectral weights (torch ``FfnoGenerator``)::

    lift                                             1x1, C + 2 -> width
    layers.{l}.fourier_y.weight_real / .weight_imag  (width, width, modes), same layout
    layers.{l}.fourier_x.weight_real / .weight_imag  (width, width, modes), same layout
    layers.{l}.ff1, layers.{l}.ff2                   1x1, width -> width -> width
    {branch}.project, {branch}.head, {branch}.border_head   1x1 (border_head: probe_big)

The 1x1 kernels transpose like the 3x3 ones (keras (1, 1, in, out) <-> torch (out, in, 1, 1)).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from ptycho.backends.architecture import (
    BORDER_CHANNELS,
    PHASE_TAPS,
    POSITION_CHANNELS,
    ffno_sizes,
    filter_ladder,
    fourier_bases,
    fourier_init_bound,
    position_grid,
    residual_levels,
    skip_channels,
)
from ptycho.config.config import ModelConfig


def _conv(filters: int, name: str) -> keras.layers.Conv2D:
    """3x3 'same' convolution, Glorot-uniform kernel, zero bias, no activation."""
    return keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer="glorot_uniform",
                               bias_initializer="zeros", name=name)


def _max_pool(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")


def _upsample(x: tf.Tensor) -> tf.Tensor:
    """Nearest-neighbour 2x upsampling of (B, H, W, F)."""
    return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)


def conv_after_upsample(x: tf.Tensor, conv: keras.layers.Conv2D, skip: tf.Tensor | None = None
                        ) -> tf.Tensor:
    """``conv(_upsample(x))`` computed without the upsampled input (built ``conv``, 3x3 'same').

    The four output phases are one convolution of ``x`` with pairwise-summed taps and
    4x the output channels, interleaved by ``tf.nn.depth_to_space`` (the torch network's
    ``conv_after_upsample``). x (B, H, W, C) -> (B, 2H, 2W, conv.filters). With ``skip``
    (B, 2H, 2W, S): ``conv(concat([_upsample(x), skip], -1))`` (``conv`` has C + S inputs).
    """
    channels = x.shape[-1]
    taps = tf.constant(PHASE_TAPS, dtype=conv.kernel.dtype)
    full = conv.kernel if skip is None else conv.kernel[:, :, :channels]
    kernel = tf.einsum("par,rcio,qbc->abipqo", taps, full, taps)
    kernel = tf.reshape(kernel, (3, 3, -1, 4 * conv.filters))
    y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
    if conv.use_bias:
        y = y + tf.tile(conv.bias, [4])
    y = tf.nn.depth_to_space(y, 2)
    if skip is None:
        return y
    return y + tf.nn.conv2d(skip, conv.kernel[:, :, channels:], strides=1, padding="SAME")


def _build_pair(block, input_shape) -> None:
    """Create the weights of a block's conv1/conv2 for ``input_shape`` (B, H, W, F)."""
    shape = tuple(input_shape)
    block.conv1.build(shape)
    block.conv2.build(shape[:-1] + (block.filters,))
    block.built = True


def _scaled(shape, factor: float, channels: int) -> tuple:
    """(B, H, W, F) -> (B, H*factor, W*factor, channels)."""
    return (shape[0], int(shape[1] * factor), int(shape[2] * factor), channels)


class ConvBlock(keras.layers.Layer):
    """Two 3x3 conv + ReLU, then ``resample``: 'pool' (2x2 max-pool) or 'up' (nearest 2x).

    Sub-layers ``{prefix}.conv1``, ``{prefix}.conv2`` (the names the torch mapping uses).
    ``residual=True`` (``resnet``): ``h = relu(conv1(x)); relu(h + conv2(h))`` (same layers).
    """

    def __init__(self, filters: int, prefix: str, resample: str, residual: bool = False,
                 **kwargs):
        super().__init__(name=prefix, **kwargs)
        if resample not in ("pool", "up"):
            raise ValueError(f"resample must be 'pool' or 'up' (got {resample!r})")
        self.filters = filters
        self.resample = resample
        self.residual = residual
        self.conv1 = _conv(filters, f"{prefix}.conv1")
        self.conv2 = _conv(filters, f"{prefix}.conv2")

    def build(self, input_shape):
        _build_pair(self, input_shape)

    def features(self, x):
        """The two convolutions and ReLUs (and the residual sum), before the resampling."""
        h = tf.nn.relu(self.conv1(x))
        if self.residual:
            return tf.nn.relu(h + self.conv2(h))
        return tf.nn.relu(self.conv2(h))

    def call(self, x):
        x = self.features(x)
        return _max_pool(x) if self.resample == "pool" else _upsample(x)


_ACTIVATIONS = {"sigmoid": tf.math.sigmoid, "swish": tf.nn.silu, "softplus": tf.math.softplus,
                "relu": tf.nn.relu}


class DecoderBranch(keras.layers.Layer):
    """One decoder (amplitude or phase): ConvUp ladder to N/2, then the output head.

    With ``pad_object`` the head predicts the central N/2 box (zero-padded to N) from all but
    the last 4 feature channels; with ``probe_big`` the last 4 channels feed a border branch
    (ConvUp to N, 3x3 conv, swish) kept outside the central box. Without ``pad_object`` a
    ConvUp to N and the head predict the full patch. ``call(features, central_only=True)``
    skips the border branch (zeros outside the central box; inference that uses only the centre).
    ``skip_widths = (blocks, half, full)`` (``architecture.skip_channels``): encoder channels
    concatenated after the decoder features at each block, the N/2 stage and the N stage.
    """

    def __init__(self, branch: str, decoder_filters: list[int], border_filters: int, c_out: int,
                 activation: str, config: ModelConfig,
                 skip_widths: tuple[list[int], int, int] | None = None, **kwargs):
        super().__init__(name=branch, **kwargs)
        self.skip_widths = skip_widths or ([0] * len(decoder_filters), 0, 0)
        residual = residual_levels(config.architecture)
        self.blocks = [ConvBlock(filters, f"{branch}.blocks.{j}", "up", residual)
                       for j, filters in enumerate(decoder_filters)]
        self.activation_name = activation
        self.pad_object = bool(config.pad_object)
        self.probe_big = bool(config.probe_big and config.pad_object)
        n = int(config.N)
        self.head = _conv(c_out, f"{branch}.head")
        if self.pad_object:
            if self.probe_big:
                self.border_up = ConvBlock(border_filters, f"{branch}.border_up", "up",
                                           residual)
                self.border_head = _conv(c_out, f"{branch}.border_head")
                border = np.ones((n, n), np.float32)
                border[n // 4: n // 4 + n // 2, n // 4: n // 4 + n // 2] = 0.0
                self._border_mask = tf.constant(border[:, :, None])
        else:
            self.full_up = ConvBlock(border_filters, f"{branch}.full_up", "up", residual)

    def build(self, input_shape):
        shape = tuple(input_shape)
        block_skips, half, full = self.skip_widths
        for block, skip in zip(self.blocks, block_skips):
            block.build(shape[:-1] + (shape[-1] + skip,))
            shape = _scaled(shape, 2, block.filters)
        if self.pad_object:
            self.head.build(shape[:-1] + (shape[-1] - BORDER_CHANNELS + half,))
            if self.probe_big:
                self.border_up.build(shape[:-1] + (BORDER_CHANNELS + half,))
                self.border_head.build(_scaled(shape, 2, self.border_up.filters + full))
        else:
            self.full_up.build(shape[:-1] + (shape[-1] + half,))
            self.head.build(_scaled(shape, 2, self.full_up.filters + full))
        self.built = True

    def _head_activation(self, x):
        if self.activation_name == "phase":
            return math.pi * tf.math.tanh(x)
        return _ACTIVATIONS[self.activation_name](x)

    def call(self, features, central_only: bool = False, skips=None):
        """``skips``: the encoder feature maps (level 0 first) for ``unet``; None for ``cnn``."""
        x = features
        levels = len(skips) if skips else 0
        for j, block in enumerate(self.blocks):
            if skips and j:
                x = tf.concat([x, skips[levels - j]], -1)
            x = block(x)
        half, full = (skips[1], skips[0]) if skips else (None, None)

        def join(decoder):
            return decoder if half is None else tf.concat([decoder, half], -1)

        if not self.pad_object:
            return self._head_activation(
                conv_after_upsample(self.full_up.features(join(x)), self.head, full))
        quarter = x.shape[1] // 2
        centre = self._head_activation(self.head(join(x[..., :-BORDER_CHANNELS])))
        out = tf.pad(centre, [[0, 0], [quarter, quarter], [quarter, quarter], [0, 0]])
        if self.probe_big and not central_only:
            features = self.border_up.features(join(x[..., -BORDER_CHANNELS:]))
            border = tf.nn.silu(conv_after_upsample(features, self.border_head, full))
            out = out + border * self._border_mask
        return out


class CnnGenerator(keras.layers.Layer):
    """Encoder + amplitude/phase decoders (``config.architecture`` 'cnn', 'unet' or 'resnet').

    ``call(x (B, N, N, C) float32) -> (amplitude, phase)``, each (B, N, N, C_out) float32;
    amplitude from ``amp_activation``, phase ``pi * tanh`` (radians).
    """

    def __init__(self, config: ModelConfig, **kwargs):
        kwargs.setdefault("name", "generator")
        super().__init__(**kwargs)
        channels = config.gridsize ** 2
        encoder_filters, decoder_filters, border_filters = filter_ladder(config.N,
                                                                         config.n_filters_scale)
        self.channels = channels
        self.n = int(config.N)
        residual = residual_levels(config.architecture)
        self.encoder = [ConvBlock(filters, f"encoder.{i}", "pool", residual)
                        for i, filters in enumerate(encoder_filters)]
        self.unet = config.architecture == "unet"
        widths = skip_channels(config.N, config.n_filters_scale, config.architecture)
        c_out = channels if config.object_big else 1
        self.amplitude = DecoderBranch("amplitude", decoder_filters, border_filters, c_out,
                                       config.amp_activation, config, widths)
        self.phase = DecoderBranch("phase", decoder_filters, border_filters, c_out, "phase",
                                   config, widths)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for block in self.encoder:
            block.build(shape)
            shape = _scaled(shape, 0.5, block.filters)
        self.amplitude.build(shape)
        self.phase.build(shape)
        self.built = True

    def call(self, x, central_only: bool = False):
        if not self.unet:
            for block in self.encoder:
                x = block(x)
            return (self.amplitude(x, central_only=central_only),
                    self.phase(x, central_only=central_only))
        skips = []
        for block in self.encoder:
            skips.append(block.features(x))
            x = _max_pool(skips[-1])
        return (self.amplitude(x, central_only=central_only, skips=skips),
                self.phase(x, central_only=central_only, skips=skips))

    def conv_layers(self) -> list[keras.layers.Conv2D]:
        """Every Conv2D of the generator, in torch state-dict order."""
        layers = []
        for block in self.encoder:
            layers += [block.conv1, block.conv2]
        for branch in (self.amplitude, self.phase):
            for block in branch.blocks:
                layers += [block.conv1, block.conv2]
            if not branch.pad_object:
                layers += [branch.full_up.conv1, branch.full_up.conv2]
            layers.append(branch.head)
            if branch.probe_big:
                layers += [branch.border_up.conv1, branch.border_up.conv2, branch.border_head]
        return layers

    def torch_weights(self) -> dict:
        """``{torch parameter name inside the generator: (variable, layout)}``, layout
        'conv_kernel' (kernels) or 'same' (biases), in torch state-dict order."""
        return _conv_weights(self.conv_layers())


def _conv_weights(layers) -> dict:
    weights = {}
    for layer in layers:
        weights[f"{layer.name}.weight"] = (layer.kernel, "conv_kernel")
        weights[f"{layer.name}.bias"] = (layer.bias, "same")
    return weights


# ---------------------------------------------------------------------------------------------
# ffno
# ---------------------------------------------------------------------------------------------

def _pointwise(filters: int, name: str) -> keras.layers.Conv2D:
    """1x1 convolution, Glorot-uniform kernel, zero bias, no activation."""
    return keras.layers.Conv2D(filters, 1, kernel_initializer="glorot_uniform",
                               bias_initializer="zeros", name=name)


def fourier_axis(h, weight_real, weight_imag, forward, inverse, axis: str):
    """Spectral convolution of (B, H, W, C) features along one axis (the torch function).

    ``axis`` 'y' transforms along H, 'x' along W; ``weight_real``, ``weight_imag``
    (C, O, modes); ``forward`` (n, 2 modes), ``inverse`` (2 modes, n) from
    :func:`ptycho.backends.architecture.fourier_bases`. Returns (B, H, W, O):
    ``irfft_k(sum_c rfft(h)[k, c] * W[c, o, k] for k < modes)`` along the axis, computed as
    the truncated transform, one complex channel mixing per frequency (a real (2C x 2O) block
    matrix) and the inverse transform; 'x' is 'y' of the transposed features.
    """
    if axis == "x":
        swapped = tf.transpose(h, [0, 2, 1, 3])
        return tf.transpose(fourier_axis(swapped, weight_real, weight_imag, forward, inverse,
                                         "y"), [0, 2, 1, 3])
    if axis != "y":
        raise ValueError(f"axis must be 'x' or 'y' (got {axis!r})")
    n, cols, c = h.shape[1:]
    c_out, modes = weight_real.shape[1:]
    weight_real, weight_imag = tf.convert_to_tensor(weight_real), tf.convert_to_tensor(weight_imag)
    # block[k, p * C + c, q * O + o]: part p (re, im) of input channel c -> part q of output o
    block = tf.stack([tf.stack([weight_real, weight_imag]),
                      tf.stack([-weight_imag, weight_real])])
    block = tf.reshape(tf.transpose(block, [4, 0, 2, 1, 3]), (modes, 2 * c, 2 * c_out))
    spectrum = tf.einsum("nk,bnx->bkx", forward, tf.reshape(h, (-1, n, cols * c)))
    spectrum = tf.transpose(tf.reshape(spectrum, (-1, modes, 2, cols, c)), [1, 0, 3, 2, 4])
    mixed = tf.matmul(tf.reshape(spectrum, (modes, -1, 2 * c)), block)
    mixed = tf.transpose(tf.reshape(mixed, (modes, -1, cols, 2, c_out)), [1, 0, 3, 2, 4])
    out = tf.einsum("kn,bkx->bnx", inverse, tf.reshape(mixed, (-1, 2 * modes, cols * c_out)))
    return tf.reshape(out, (-1, n, cols, c_out))


class FourierAxis(keras.layers.Layer):
    """Learnable spectral convolution along one axis (``{prefix}`` = ``layers.{l}.fourier_y``
    or ``.fourier_x``): weights ``weight_real``, ``weight_imag`` (width, width, modes), uniform
    in ``+-fourier_init_bound``; the bases are constants."""

    def __init__(self, width: int, modes: int, n: int, axis: str, prefix: str, **kwargs):
        super().__init__(name=prefix, **kwargs)
        self.width, self.modes, self.axis = width, modes, axis
        self.bound = fourier_init_bound(n, modes, width)
        forward, inverse = fourier_bases(n, modes)
        self._forward = tf.constant(forward, tf.float32)
        self._inverse = tf.constant(inverse, tf.float32)

    def build(self, input_shape):
        init = keras.initializers.RandomUniform(-self.bound, self.bound)
        shape = (self.width, self.width, self.modes)
        self.weight_real = self.add_weight(shape=shape, initializer=init, name="weight_real")
        self.weight_imag = self.add_weight(shape=shape, initializer=init, name="weight_imag")
        self.built = True

    def call(self, h):
        return fourier_axis(h, self.weight_real, self.weight_imag, self._forward,
                            self._inverse, self.axis)


class FourierLayer(keras.layers.Layer):
    """``s = fourier_y(h) + fourier_x(h); h + ff2(gelu(ff1(s)))`` on (B, N, N, width)."""

    def __init__(self, width: int, modes: int, n: int, prefix: str, **kwargs):
        super().__init__(name=prefix, **kwargs)
        self.fourier_y = FourierAxis(width, modes, n, "y", f"{prefix}.fourier_y")
        self.fourier_x = FourierAxis(width, modes, n, "x", f"{prefix}.fourier_x")
        self.ff1 = _pointwise(width, f"{prefix}.ff1")
        self.ff2 = _pointwise(width, f"{prefix}.ff2")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.fourier_y.build(shape)
        self.fourier_x.build(shape)
        self.ff1.build(shape)
        self.ff2.build(shape)
        self.built = True

    def call(self, h):
        spectral = self.fourier_y(h) + self.fourier_x(h)
        return h + self.ff2(tf.nn.gelu(self.ff1(spectral), approximate=False))

    def weight_layers(self) -> dict:
        """Torch-named weights of this layer (see :meth:`FfnoGenerator.torch_weights`)."""
        weights = {}
        for axis in (self.fourier_y, self.fourier_x):
            weights[f"{axis.name}.weight_real"] = (axis.weight_real, "same")
            weights[f"{axis.name}.weight_imag"] = (axis.weight_imag, "same")
        return {**weights, **_conv_weights([self.ff1, self.ff2])}


class FfnoHead(keras.layers.Layer):
    """One ffno output branch (``amplitude`` or ``phase``): ``project`` + GELU, ``head`` (and
    ``border_head``), pointwise; ``pad_object`` / ``probe_big`` as in :class:`DecoderBranch`
    (the torch ``FfnoHead``)."""

    def __init__(self, branch: str, width: int, c_out: int, activation: str,
                 config: ModelConfig, **kwargs):
        super().__init__(name=branch, **kwargs)
        self.width = width
        self.activation_name = activation
        self.pad_object = bool(config.pad_object)
        self.probe_big = bool(config.probe_big and config.pad_object)
        self.project = _pointwise(width, f"{branch}.project")
        self.head = _pointwise(c_out, f"{branch}.head")
        if self.probe_big:
            n = int(config.N)
            self.border_head = _pointwise(c_out, f"{branch}.border_head")
            border = np.ones((n, n), np.float32)
            border[n // 4: n // 4 + n // 2, n // 4: n // 4 + n // 2] = 0.0
            self._border_mask = tf.constant(border[:, :, None])

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.project.build(shape)
        self.head.build(shape[:-1] + (self.width,))
        if self.probe_big:
            self.border_head.build(shape[:-1] + (self.width,))
        self.built = True

    def _head_activation(self, x):
        if self.activation_name == "phase":
            return math.pi * tf.math.tanh(x)
        return _ACTIVATIONS[self.activation_name](x)

    def _features(self, h):
        return tf.nn.gelu(self.project(h), approximate=False)

    def call(self, h, central_only: bool = False):
        """(B, N, N, width) -> (B, N, N, C_out)."""
        if not self.pad_object:
            return self._head_activation(self.head(self._features(h)))
        n = h.shape[1]
        quarter = n // 4
        pad = [[0, 0], [quarter, quarter], [quarter, quarter], [0, 0]]
        box = slice(quarter, quarter + n // 2)
        if self.probe_big and not central_only:
            features = self._features(h)
            centre = self._head_activation(self.head(features[:, box, box]))
            border = tf.nn.silu(self.border_head(features)) * self._border_mask
            return tf.pad(centre, pad) + border
        return tf.pad(self._head_activation(self.head(self._features(h[:, box, box]))), pad)

    def weight_layers(self) -> dict:
        layers = [self.project, self.head] + ([self.border_head] if self.probe_big else [])
        return _conv_weights(layers)


class FfnoGenerator(keras.layers.Layer):
    """Factorised Fourier neural operator (``architecture='ffno'``), layer for layer the torch
    ``FfnoGenerator`` (:func:`ptycho.backends.architecture.ffno_sizes`).

    ``call(x (B, N, N, C) float32 normalised amplitudes X (>= 0)) -> (amplitude, phase)``,
    each (B, N, N, C_out) float32: amplitude from ``amp_activation``, phase ``pi * tanh`` in
    radians.
    """

    def __init__(self, config: ModelConfig, **kwargs):
        kwargs.setdefault("name", "generator")
        super().__init__(**kwargs)
        channels = config.gridsize ** 2
        n = int(config.N)
        width, modes, layers = ffno_sizes(n, config.n_filters_scale)
        self.width = width
        self.lift = _pointwise(width, "lift")
        self.fourier_layers = [FourierLayer(width, modes, n, f"layers.{i}")
                               for i in range(layers)]
        c_out = channels if config.object_big else 1
        self.amplitude = FfnoHead("amplitude", width, c_out, config.amp_activation, config)
        self.phase = FfnoHead("phase", width, c_out, "phase", config)
        grid = position_grid(n)
        rows, cols = np.meshgrid(grid, grid, indexing="ij")
        self._positions = tf.constant(np.stack([rows, cols], -1)[None])

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.lift.build(shape[:-1] + (shape[-1] + POSITION_CHANNELS,))
        shape = shape[:-1] + (self.width,)
        for layer in self.fourier_layers:
            layer.build(shape)
        self.amplitude.build(shape)
        self.phase.build(shape)
        self.built = True

    def call(self, x, central_only: bool = False):
        positions = tf.tile(tf.cast(self._positions, x.dtype), [tf.shape(x)[0], 1, 1, 1])
        h = self.lift(tf.concat([tf.math.log1p(tf.nn.relu(x)), positions], -1))
        for layer in self.fourier_layers:
            h = layer(h)
        return (self.amplitude(h, central_only=central_only),
                self.phase(h, central_only=central_only))

    def torch_weights(self) -> dict:
        """``{torch parameter name inside the generator: (variable, layout)}`` in torch
        state-dict order (layouts as :meth:`CnnGenerator.torch_weights`)."""
        weights = _conv_weights([self.lift])
        for layer in self.fourier_layers:
            weights.update(layer.weight_layers())
        weights.update(self.amplitude.weight_layers())
        weights.update(self.phase.weight_layers())
        return weights


def make_generator(config: ModelConfig, **kwargs) -> keras.layers.Layer:
    """The generator of ``config.architecture``: :class:`FfnoGenerator` for 'ffno', else
    :class:`CnnGenerator` ('cnn', 'unet', 'resnet')."""
    if config.architecture == "ffno":
        return FfnoGenerator(config, **kwargs)
    return CnnGenerator(config, **kwargs)
