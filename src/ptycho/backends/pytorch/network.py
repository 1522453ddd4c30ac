"""The generators (design section 4): encoder, separate amplitude and phase decoders.

Input ``(B, C, N, N)`` normalised amplitudes; output ``(amplitude, phase)`` each
``(B, C_out, N, N)`` with ``C_out = C`` when ``object_big`` else 1. ``cnn``: no skip
connections; ``unet``: the same modules, each decoder stage also reading the encoder feature
map of its size (:func:`ptycho.backends.architecture.skip_channels`); ``resnet``: the same
modules, each level a residual block (:func:`ptycho.backends.architecture.residual_levels`);
``ffno``: :class:`FfnoGenerator`, a factorised Fourier neural operator at full resolution.
:func:`make_generator` builds the one ``config.architecture`` names.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F

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


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
    nn.init.xavier_uniform_(conv.weight)  # Glorot-uniform kernels, zero biases (Keras defaults)
    nn.init.zeros_(conv.bias)
    return conv


class ConvBlock(nn.Module):
    """Two 3x3 conv + ReLU, then ``resample``: 'pool' (2x2 max-pool) or 'up' (nearest 2x).

    ``residual=True`` (``resnet``): ``h = relu(conv1(x)); relu(h + conv2(h))`` (same modules).
    The ReLUs work in place on the convolution outputs (autograd-safe: a convolution's gradient
    does not need its output), which saves a large temporary per layer (~15 % faster on CPU).
    """

    def __init__(self, c_in: int, c_out: int, resample: str, residual: bool = False):
        super().__init__()
        if resample not in ("pool", "up"):
            raise ValueError(f"resample must be 'pool' or 'up' (got {resample!r})")
        self.conv1 = _conv(c_in, c_out)
        self.conv2 = _conv(c_out, c_out)
        self.resample = resample
        self.residual = residual

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The two convolutions and ReLUs (and the residual sum), before the resampling."""
        h = torch.relu_(self.conv1(x))
        if self.residual:
            return torch.relu_(h + self.conv2(h))
        return torch.relu_(self.conv2(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.resample == "pool":
            return F.max_pool2d(x, 2)
        return F.interpolate(x, scale_factor=2, mode="nearest")


@functools.lru_cache(maxsize=8)
def _phase_taps(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:data:`ptycho.backends.architecture.PHASE_TAPS` as a (2, 3, 3) tensor, made once per
    dtype and device (no host-to-device copy in every forward on a GPU); never an inference
    tensor, so a first call under ``torch.inference_mode`` does not break later training."""
    with torch.inference_mode(False):
        return torch.tensor(PHASE_TAPS, dtype=dtype, device=device)


def conv_after_upsample(x: torch.Tensor, conv: nn.Conv2d, skip: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """``conv(F.interpolate(x, scale_factor=2, mode='nearest'))`` without the upsampled input.

    A 3x3 convolution of a nearest-upsampled image is, for each of the four output phases
    (row, column parity), a convolution of the original with taps summed in pairs; the four
    phases are computed as one convolution with 4x the output channels and interleaved by
    :func:`torch.nn.functional.pixel_shuffle`. Same result up to float rounding, without
    writing, reading and back-propagating through the 4x larger upsampled tensor (the border
    branch's 64-channel N x N map; at N=64, batch 16 a CPU training step takes 318 ms instead
    of 348).

    x (B, C, H, W) -> (B, conv.out_channels, 2H, 2W); ``conv`` is 3x3 with padding 1.

    With ``skip`` (B, S, 2H, 2W) the result is ``conv(cat([upsample(x), skip], 1))`` (``conv``
    has C + S input channels): the phase form on the first C input channels plus a plain
    convolution of ``skip`` with the other S.
    """
    kernel = conv.weight if skip is None else conv.weight[:, :x.shape[1]]
    taps = _phase_taps(conv.weight.dtype, conv.weight.device)  # (phase, 3, 3)
    # weight[o, i, a, b] for output phase (p, q): sum_rc taps[p, a, r] k[o, i, r, c] taps[q, b, c]
    weight = torch.einsum("par,oirc,qbc->opqiab", taps, kernel, taps)
    weight = weight.reshape(-1, *kernel.shape[1:])
    bias = conv.bias.repeat_interleave(4) if conv.bias is not None else None
    out = F.pixel_shuffle(F.conv2d(x, weight, bias, padding=1), 2)
    if skip is None:
        return out
    return out + F.conv2d(skip, conv.weight[:, x.shape[1]:], None, padding=1)


def _activation(name: str):
    return {"sigmoid": torch.sigmoid, "swish": F.silu, "softplus": F.softplus,
            "relu": F.relu}[name]


class DecoderBranch(nn.Module):
    """One decoder (amplitude or phase): ConvUp ladder to N/2, then the output head.

    With ``pad_object`` the head predicts the central N/2 box (zero-padded to N) from all but
    the last 4 feature channels; with ``probe_big`` the last 4 channels feed a border branch
    (ConvUp to N, 3x3 conv, swish) kept outside the central box. ``central_only=True`` skips
    the border branch (zeros outside the central box; inference that uses only the centre).

    ``skip_widths = (blocks, half, full)`` (:func:`~ptycho.backends.architecture.skip_channels`):
    encoder channels concatenated after the decoder features at the input of each block, of
    the N/2 stage (head and border_up, or full_up) and of the N stage (border_head, or head).
    """

    def __init__(self, c_in: int, decoder_filters: list[int], border_filters: int, c_out: int,
                 activation: str, config: ModelConfig,
                 skip_widths: tuple[list[int], int, int] | None = None):
        super().__init__()
        block_skips, half, full = skip_widths or ([0] * len(decoder_filters), 0, 0)
        residual = residual_levels(config.architecture)
        blocks = []
        for filters, skip in zip(decoder_filters, block_skips):
            blocks.append(ConvBlock(c_in + skip, filters, "up", residual))
            c_in = filters
        self.blocks = nn.ModuleList(blocks)
        self.activation = activation
        self.pad_object = config.pad_object
        self.probe_big = config.probe_big and config.pad_object
        n = config.N
        if self.pad_object:
            self.head = _conv(c_in - BORDER_CHANNELS + half, c_out)
            if self.probe_big:
                self.border_up = ConvBlock(BORDER_CHANNELS + half, border_filters, "up",
                                           residual)
                self.border_head = _conv(border_filters + full, c_out)
                border = torch.ones(n, n)
                border[n // 4: n // 4 + n // 2, n // 4: n // 4 + n // 2] = 0.0
                self.register_buffer("border_mask", border, persistent=False)
        else:
            self.full_up = ConvBlock(c_in + half, border_filters, "up", residual)
            self.head = _conv(border_filters + full, c_out)

    def _head_activation(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation == "phase":
            return math.pi * torch.tanh(x)
        return _activation(self.activation)(x)

    def forward(self, features: torch.Tensor, central_only: bool = False,
                skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``skips``: the encoder feature maps (level 0 first) for ``unet``; None for ``cnn``."""
        x = features
        levels = len(skips) if skips else 0
        for j, block in enumerate(self.blocks):
            if skips and j:
                x = torch.cat([x, skips[levels - j]], 1)
            x = block(x)
        half, full = (skips[1], skips[0]) if skips else (None, None)

        def join(decoder: torch.Tensor) -> torch.Tensor:
            return decoder if half is None else torch.cat([decoder, half], 1)

        if not self.pad_object:
            return self._head_activation(
                conv_after_upsample(self.full_up.features(join(x)), self.head, full))
        quarter = x.shape[-1] // 2
        centre = self._head_activation(self.head(join(x[:, :-BORDER_CHANNELS])))
        out = F.pad(centre, (quarter, quarter, quarter, quarter))
        if self.probe_big and not central_only:
            features = self.border_up.features(join(x[:, -BORDER_CHANNELS:]))
            border = F.silu(conv_after_upsample(features, self.border_head, full))
            out = out + border * self.border_mask
        return out


class CnnGenerator(nn.Module):
    """Encoder + amplitude/phase decoders. forward(x (B, C, N, N)) -> (amp, phase) (B, C_out, N, N).

    ``config.architecture``: 'cnn', 'unet' (skip connections, see :class:`DecoderBranch`) or
    'resnet' (residual levels, see :class:`ConvBlock`).
    ``forward(x, central_only=True)`` computes only the central N/2 x N/2 box exactly (the
    border branch is skipped and the border left zero); see :class:`DecoderBranch`.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        channels = config.gridsize ** 2
        encoder_filters, decoder_filters, border_filters = filter_ladder(config.N,
                                                                         config.n_filters_scale)
        c_in = channels
        residual = residual_levels(config.architecture)
        blocks = []
        for filters in encoder_filters:
            blocks.append(ConvBlock(c_in, filters, "pool", residual))
            c_in = filters
        self.encoder = nn.ModuleList(blocks)
        self.unet = config.architecture == "unet"
        widths = skip_channels(config.N, config.n_filters_scale, config.architecture)
        c_out = channels if config.object_big else 1
        self.amplitude = DecoderBranch(c_in, decoder_filters, border_filters, c_out,
                                       config.amp_activation, config, widths)
        self.phase = DecoderBranch(c_in, decoder_filters, border_filters, c_out, "phase", config,
                                   widths)

    def forward(self, x: torch.Tensor, central_only: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.unet:
            for block in self.encoder:
                x = block(x)
            return self.amplitude(x, central_only), self.phase(x, central_only)
        skips = []
        for block in self.encoder:
            skips.append(block.features(x))
            x = F.max_pool2d(skips[-1], 2)
        return (self.amplitude(x, central_only, skips), self.phase(x, central_only, skips))


# ---------------------------------------------------------------------------------------------
# ffno
# ---------------------------------------------------------------------------------------------

def fourier_axis(h: torch.Tensor, weight_real: torch.Tensor, weight_imag: torch.Tensor,
                 forward: torch.Tensor, inverse: torch.Tensor, axis: str) -> torch.Tensor:
    """Spectral convolution of channels-last features along one spatial axis.

    ``h`` (B, H, W, C) real; ``axis`` 'y' transforms along H (each column as a signal), 'x'
    along W. ``weight_real``, ``weight_imag`` (C, O, modes): the complex C x O matrix of each
    kept frequency; ``forward`` (n, 2 modes) and ``inverse`` (2 modes, n): the bases of
    :func:`ptycho.backends.architecture.fourier_bases` for the axis length n. Returns
    (B, H, W, O): ``irfft_k(sum_c rfft(h)[k, c] * W[c, o, k] for k < modes)`` along the axis.

    Three matrix products: the truncated transform of every signal, one complex channel
    mixing per frequency (a real (2C x 2O) block matrix), the inverse transform. 'x' is 'y' of
    the transposed view.
    """
    if axis == "x":
        return fourier_axis(h.transpose(1, 2), weight_real, weight_imag, forward, inverse,
                            "y").transpose(1, 2)
    if axis != "y":
        raise ValueError(f"axis must be 'x' or 'y' (got {axis!r})")
    batch, n, cols, c = h.shape
    c_out, modes = weight_real.shape[1:]
    # block[k, p * C + c, q * O + o]: part p (re, im) of input channel c -> part q of output o
    block = torch.stack([torch.stack([weight_real, weight_imag]),
                         torch.stack([-weight_imag, weight_real])])
    block = block.permute(4, 0, 2, 1, 3).reshape(modes, 2 * c, 2 * c_out)
    spectrum = torch.matmul(forward.t(), h.reshape(batch, n, cols * c))  # (B, 2 modes, W C)
    spectrum = spectrum.reshape(batch, modes, 2, cols, c).permute(1, 0, 3, 2, 4)
    mixed = torch.bmm(spectrum.reshape(modes, batch * cols, 2 * c), block)
    mixed = mixed.reshape(modes, batch, cols, 2, c_out).permute(1, 0, 3, 2, 4)
    out = torch.matmul(inverse.t(), mixed.reshape(batch, 2 * modes, cols * c_out))
    return out.reshape(batch, n, cols, c_out)


class FourierAxis(nn.Module):
    """Learnable spectral convolution along one axis (``fourier_x`` or ``fourier_y``).

    Parameters ``weight_real``, ``weight_imag`` (width, width, modes) float32, uniform in
    ``+-fourier_init_bound``; bases as non-persistent buffers (not in the state dict).
    """

    def __init__(self, width: int, modes: int, n: int, axis: str):
        super().__init__()
        bound = fourier_init_bound(n, modes, width)
        self.weight_real = nn.Parameter(torch.empty(width, width, modes).uniform_(-bound, bound))
        self.weight_imag = nn.Parameter(torch.empty(width, width, modes).uniform_(-bound, bound))
        forward, inverse = fourier_bases(n, modes)
        self.register_buffer("forward_basis", torch.tensor(forward, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("inverse_basis", torch.tensor(inverse, dtype=torch.float32),
                             persistent=False)
        self.axis = axis

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, N, N, width) -> (B, N, N, width), channels-last."""
        return fourier_axis(h, self.weight_real, self.weight_imag, self.forward_basis,
                            self.inverse_basis, self.axis)


class Pointwise(nn.Module):
    """A 1x1 convolution of channels-last (B, H, W, C) features (a matrix product per pixel).

    ``weight`` (out, in, 1, 1) and ``bias`` (out,) as in ``nn.Conv2d`` (Glorot-uniform kernel,
    zero bias, the Keras defaults), so the kernels transfer like the cnn's 3x3 ones.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(c_out, c_in, 1, 1)))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.weight.reshape(self.weight.shape[:2]), self.bias)


class FourierLayer(nn.Module):
    """``s = fourier_y(h) + fourier_x(h); h + ff2(gelu(ff1(s)))`` on (B, N, N, width)."""

    def __init__(self, width: int, modes: int, n: int):
        super().__init__()
        self.fourier_y = FourierAxis(width, modes, n, "y")
        self.fourier_x = FourierAxis(width, modes, n, "x")
        self.ff1 = Pointwise(width, width)
        self.ff2 = Pointwise(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        spectral = self.fourier_y(h) + self.fourier_x(h)
        return h + self.ff2(F.gelu(self.ff1(spectral)))


class FfnoHead(nn.Module):
    """One ffno output branch: ``project`` + GELU, then ``head`` (and ``border_head``).

    Honours ``pad_object`` / ``probe_big`` like :class:`DecoderBranch`: the head's activation
    in the central N/2 box, zero outside, plus ``swish(border_head)`` outside the box with
    ``probe_big``; the whole patch without ``pad_object``. Pointwise, so the central box is
    computed from the central features only (and ``central_only`` is exact).
    """

    def __init__(self, width: int, c_out: int, activation: str, config: ModelConfig):
        super().__init__()
        self.project = Pointwise(width, width)
        self.head = Pointwise(width, c_out)
        self.activation = activation
        self.pad_object = config.pad_object
        self.probe_big = config.probe_big and config.pad_object
        if self.probe_big:
            n = config.N
            self.border_head = Pointwise(width, c_out)
            border = torch.ones(n, n, 1)
            border[n // 4: n // 4 + n // 2, n // 4: n // 4 + n // 2] = 0.0
            self.register_buffer("border_mask", border, persistent=False)

    def _head_activation(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation == "phase":
            return math.pi * torch.tanh(x)
        return _activation(self.activation)(x)

    def forward(self, h: torch.Tensor, central_only: bool = False) -> torch.Tensor:
        """(B, N, N, width) -> (B, N, N, C_out), channels-last."""
        if not self.pad_object:
            return self._head_activation(self.head(F.gelu(self.project(h))))
        quarter = h.shape[1] // 4
        box = slice(quarter, quarter + h.shape[1] // 2)
        if self.probe_big and not central_only:
            features = F.gelu(self.project(h))
            centre = self._head_activation(self.head(features[:, box, box]))
            border = F.silu(self.border_head(features)) * self.border_mask
            return F.pad(centre, (0, 0, quarter, quarter, quarter, quarter)) + border
        centre = self._head_activation(self.head(F.gelu(self.project(h[:, box, box]))))
        return F.pad(centre, (0, 0, quarter, quarter, quarter, quarter))


class FfnoGenerator(nn.Module):
    """Factorised Fourier neural operator (``architecture='ffno'``).

    forward(x (B, C, N, N) float32 normalised amplitudes X (>= 0), central_only) ->
    (amplitude, phase), each (B, C_out, N, N) float32: amplitude from ``amp_activation``,
    phase ``pi * tanh`` in radians. The layers and sizes are those of
    :func:`ptycho.backends.architecture.ffno_sizes` (N=64, s=2: width 64, 16 modes, 4 layers). Internally channels-last: ``x.permute(0, 2, 3, 1)`` is a
    free view of the channels-last input :class:`~ptycho.backends.pytorch.model.PtychoPINN`
    passes, and the outputs are channels-last views of (B, C_out, N, N).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        channels = config.gridsize ** 2
        n = config.N
        width, modes, layers = ffno_sizes(n, config.n_filters_scale)
        self.lift = Pointwise(channels + POSITION_CHANNELS, width)
        self.layers = nn.ModuleList(FourierLayer(width, modes, n) for _ in range(layers))
        c_out = channels if config.object_big else 1
        self.amplitude = FfnoHead(width, c_out, config.amp_activation, config)
        self.phase = FfnoHead(width, c_out, "phase", config)
        grid = torch.tensor(position_grid(n))
        rows, cols = torch.meshgrid(grid, grid, indexing="ij")
        self.register_buffer("positions", torch.stack([rows, cols], -1), persistent=False)

    def forward(self, x: torch.Tensor, central_only: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.log1p(torch.relu(x.permute(0, 2, 3, 1)))
        positions = self.positions.to(h.dtype).expand(h.shape[0], -1, -1, -1)
        h = self.lift(torch.cat([h, positions], -1))
        for layer in self.layers:
            h = layer(h)
        return (self.amplitude(h, central_only).permute(0, 3, 1, 2),
                self.phase(h, central_only).permute(0, 3, 1, 2))


def make_generator(config: ModelConfig) -> nn.Module:
    """The generator of ``config.architecture``: :class:`FfnoGenerator` for 'ffno', else
    :class:`CnnGenerator` ('cnn', 'unet', 'resnet')."""
    if config.architecture == "ffno":
        return FfnoGenerator(config)
    return CnnGenerator(config)
