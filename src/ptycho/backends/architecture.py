"""Framework-free description of the generator architectures shared by both backends (design §4).

``cnn``: encoder of conv-pool levels, separate amplitude and phase decoders of conv-upsample
levels, no skip connections. ``unet``: the same layers (same parameter names) where every
decoder stage also reads the encoder feature map of its size (see :func:`skip_channels`).
``resnet``: the cnn's layers and parameters (same names, same shapes, no new parameter) where
every level is a residual block (see :func:`residual_levels`). ``ffno``: a factorised Fourier
neural operator at full resolution (no encoder or decoder; see :func:`ffno_sizes` and
:func:`fourier_bases`), whose every output pixel depends on every input pixel.
"""

from __future__ import annotations

import numpy as np

from ptycho.config.config import ARCHITECTURES

#: Feature channels of the last decoder level that feed the probe_big border branch.
BORDER_CHANNELS = 4

_ENCODER_BY_N = {64: [32, 64, 128], 128: [16, 32, 64, 128], 256: [8, 16, 32, 64, 128]}
_DECODER_BY_N = {64: [64, 32], 128: [128, 64, 32], 256: [256, 128, 64, 32]}


def check_probe_shape(probe: np.ndarray, config) -> None:
    """Raise ValueError unless ``probe`` fits ``config`` (a ModelConfig):
    (N, N) for ``probe_modes`` 1, (M, N, N) for M > 1 (:func:`ptycho.physics.probe_shape`)."""
    from ptycho.physics import probe_shape

    expected = probe_shape(config.N, config.probe_modes)
    if tuple(np.shape(probe)) != expected:
        raise ValueError(f"a probe of shape {tuple(np.shape(probe))} for a model with "
                         f"N={config.N}, probe_modes={config.probe_modes}: expected {expected}")


def filter_ladder(N: int, scale: int) -> tuple[list[int], list[int], int]:
    """Filters per level for patch size N and filter scale s.

    Returns
    -------
    encoder : list of int
        Filters of each conv-pool level (N=64: 32s, 64s, 128s; each larger N adds a level).
    decoder : list of int
        Filters of each conv-upsample level of one decoder (N=64: 64s, 32s).
    border : int
        Filters of the border / full-resolution branch, ``s * 2048 // N``.
    """
    if N not in _ENCODER_BY_N:
        raise ValueError(f"the cnn architecture supports N in 64, 128, 256 (got {N})")
    return ([f * scale for f in _ENCODER_BY_N[N]], [f * scale for f in _DECODER_BY_N[N]],
            scale * 2048 // N)


def skip_channels(N: int, scale: int, architecture: str = "cnn"
                  ) -> tuple[list[int], int, int]:
    """Channels of the encoder skip concatenated into each decoder stage (0: no skip).

    Encoder level ``i`` (``i = 0 .. L-1``, L = ``len(encoder)``) runs its two convolutions at
    ``N / 2**i`` pixels; its skip is that feature map, before the max-pool. Decoder block ``j``
    (``j = 0 .. L-2``) runs its convolutions at ``8 * 2**j`` pixels, the N/2 stage (the centre
    head and the border branch of ``pad_object``, the full-resolution branch without it) at
    N/2 and the final convolution (border head, or the head without ``pad_object``) at N.
    In ``unet`` every one of these stages reads, after its own decoder features, the encoder map
    of its size: block ``j >= 1`` <- encoder level ``L - j``, the N/2 stage <- level 1, the
    N stage <- level 0 (block 0 reads the bottleneck, the pooled last level, as in ``cnn``).
    The channel order of every concatenation is ``[decoder features, encoder skip]``.
    N=64: block 1 (16 px) <- level 2 (128s channels), N/2 stage <- level 1 (64s), N stage <-
    level 0 (32s). Matching is by size: the input is a diffraction pattern, so encoder pixels
    are not positions in the object and nothing is cropped (with ``pad_object`` the N/2 stage
    predicts the central box from the whole level-1 map).

    Returns
    -------
    blocks : list of int
        Skip channels of each decoder block (block 0 always 0).
    half : int
        Skip channels of the N/2 stage.
    full : int
        Skip channels of the N stage.
    """
    encoder, decoder, _ = filter_ladder(N, scale)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)} "
                         f"(got {architecture!r})")
    if architecture != "unet":  # cnn and resnet: no skips
        return [0] * len(decoder), 0, 0
    levels = len(encoder)
    return [0] + [encoder[levels - j] for j in range(1, len(decoder))], encoder[1], encoder[0]


def residual_levels(architecture: str) -> bool:
    """True when every level (conv pair) of the generator is a residual block: ``resnet``.

    A level of ``cnn`` and ``unet`` computes ``y = relu(conv2(relu(conv1(x))))``. In ``resnet``
    the first convolution maps the level's input to its filter count (it is the projection, as
    the channel count changes at almost every level) and the second is a residual unit::

        h = relu(conv1(x));  y = relu(h + conv2(h))

    for every level: the encoder conv-pool levels, the decoder conv-upsample blocks, the
    ``border_up`` branch (``pad_object`` with ``probe_big``) and the ``full_up`` branch (without
    ``pad_object``); the max-pool or upsampling follows ``y`` as in ``cnn``, and the heads
    (including the phase-split ``conv_after_upsample``) are the cnn's. So ``resnet`` has exactly
    the cnn's parameters (names and shapes; 2,331,772 at N=64, s=2, gs=1) and no skip
    connections between levels.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)} "
                         f"(got {architecture!r})")
    return architecture == "resnet"


#: A 3x3 convolution of a nearest 2x-upsampled map, per output phase: the taps at offsets
#: (-1, 0, +1) of the upsampled grid summed onto the low-resolution grid, for phase 0 (even
#: rows/columns: input offsets -1, 0) and phase 1 (odd: 0, +1), embedded in a 3x3 kernel over
#: input offsets (-1, 0, +1). Indexed [phase, input offset, upsampled offset]; used by each
#: backend's ``conv_after_upsample``.
PHASE_TAPS = (((1.0, 0.0, 0.0), (0.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
              ((0.0, 0.0, 0.0), (1.0, 1.0, 0.0), (0.0, 0.0, 1.0)))


def skips_border(central_px: int | None, N: int) -> bool:
    """True when a caller using only the central ``central_px`` pixels of each patch lets the
    cnn skip its border branch (``predict(central_px=...)`` in ``ptycho.backends.base``)."""
    return central_px is not None and central_px <= N // 2


# ---------------------------------------------------------------------------------------------
# ffno: factorised Fourier neural operator
# ---------------------------------------------------------------------------------------------

#: Factorised Fourier layers of the ``ffno`` generator.
FFNO_LAYERS = 4
#: Coordinate channels appended to the ``ffno`` input (row, then column; see
#: :func:`position_grid`).
POSITION_CHANNELS = 2


def ffno_sizes(N: int, scale: int) -> tuple[int, int, int]:
    """``(width, modes, layers)`` of the ``ffno`` generator for patch size N and filter scale s.

    width ``32 s`` feature channels at every pixel (64 at s=2); ``modes = N / 4`` lowest rfft
    frequencies kept along each axis (16 at N=64: the same cut-off in cycles per pixel at every
    N); :data:`FFNO_LAYERS` factorised Fourier layers.

    The generator (both backends, channels-last ``(B, N, N, F)`` internally)::

        h = lift([log1p(relu(x)), rows, cols])     1x1 conv, C + 2 -> width
        L times:  s = fourier_y(h) + fourier_x(h)   spectral convolution along each axis
                  h = h + ff2(gelu(ff1(s)))         1x1 convs width -> width -> width
        per branch (amplitude, phase):
            p = gelu(project(h))                    1x1 conv width -> width
            head(p), border_head(p)                 1x1 convs width -> C_out

    with ``x`` the normalised amplitudes and ``rows``/``cols`` the pixel coordinates of
    :func:`position_grid` (spectral and 1x1 layers are translation-equivariant; the map from a
    centred diffraction pattern to an object patch is not). ``log1p`` compresses the central
    peak (about 100x the mean amplitude), which would otherwise dominate every row's and
    column's spectrum and saturate the heads at initialisation (amplitudes are >= 0; the
    loaders refuse negative values, the ReLU only keeps a stray one finite). ``fourier_y`` transforms along the rows axis (each column as a 1-D signal
    over y), ``fourier_x`` along the columns axis; each is ``irfft(W_k * rfft(h)[k < modes])``
    with a learnable complex ``width x width`` matrix ``W_k`` per kept frequency k
    (:func:`fourier_bases`). After two layers every output pixel depends on every input pixel.
    The feed-forward keeps the width (no 2x or 4x expansion): at N=64, s=2, batch 16 a 2x-wide
    one made a PyTorch training step 1.35x the cnn's on CPU, this one 0.96-0.99x.
    The heads follow the cnn: ``amp_activation`` / ``pi * tanh``; ``pad_object`` keeps the head
    in the central N/2 box (zero outside), ``probe_big`` adds ``swish(border_head)`` outside
    it; without ``pad_object`` the head covers the whole patch. Being pointwise, the heads of
    the central box need only the central features, so ``central_only`` is exact.
    """
    if N < 8 or N % 4:
        raise ValueError(f"the ffno architecture needs N divisible by 4 (got {N})")
    return 32 * scale, N // 4, FFNO_LAYERS


def position_grid(N: int) -> np.ndarray:
    """Pixel coordinates ``(i - N/2) / (N/2)`` for ``i = 0 .. N-1``, (N,) float32 in [-1, 1)."""
    return ((np.arange(N) - N / 2) / (N / 2)).astype(np.float32)


def fourier_bases(N: int, modes: int) -> tuple[np.ndarray, np.ndarray]:
    """Real matrices of the truncated ``rfft`` and of ``irfft`` of the kept modes (float64).

    ``forward`` (N, 2 modes): for a real signal ``x`` (N,), ``x @ forward`` interleaves the real
    and imaginary parts of ``numpy.fft.rfft(x)[:modes]`` (``[re_0, im_0, re_1, im_1, ...]``;
    unnormalised, ``exp(-2 pi i k n / N)``). ``inverse`` (2 modes, N): ``s @ inverse`` equals
    ``numpy.fft.irfft(S, n=N)`` of the spectrum ``S`` whose first ``modes`` entries are the
    interleaved ``s`` and the rest zero (1/N, every kept ``k >= 1`` counted twice for its
    conjugate, the imaginary part of ``S_0`` dropped as irfft does). ``modes <= N / 2`` (the
    Nyquist term is never kept). Both backends use these matrices, so the spectral layers are
    plain matrix products: identical in float32, differentiable, and fast on CPU for N <= 256
    (``2 modes`` of ``N`` outputs per signal).
    """
    if not 1 <= modes <= N // 2:
        raise ValueError(f"modes must be in 1 .. N/2 = {N // 2} (got {modes})")
    n = np.arange(N)[:, None]
    k = np.arange(modes)[None, :]
    angle = 2.0 * np.pi * n * k / N
    forward = np.empty((N, 2 * modes))
    forward[:, 0::2] = np.cos(angle)
    forward[:, 1::2] = -np.sin(angle)
    weight = np.where(k == 0, 1.0, 2.0) / N
    inverse = np.empty((2 * modes, N))
    inverse[0::2] = (weight * np.cos(angle)).T
    inverse[1::2] = (-weight * np.sin(angle)).T
    return forward, inverse


def fourier_init_bound(N: int, modes: int, width: int) -> float:
    """Half-width ``a`` of the uniform initialisation of every real and imaginary part of the
    spectral weights: ``sqrt(3 N / (4 modes width))``, which keeps the variance of white-noise
    features through one spectral convolution (0.217 at N=64, 16 modes, width 64)."""
    return float(np.sqrt(3.0 * N / (4.0 * modes * width)))
