"""Framework-free description of the generator architectures shared by both backends (design §4).

``cnn``: encoder of conv-pool levels, separate amplitude and phase decoders of conv-upsample
levels, no skip connections. ``unet``: the same layers (same parameter names) where every
decoder stage also reads the encoder feature map of its size (see :func:`skip_channels`).
``resnet``: the cnn's layers and parameters (same names, same shapes, no new parameter) where
every level is a residual block (see :func:`residual_levels`).
"""

from __future__ import annotations

from ptycho.config.config import ARCHITECTURES

#: Feature channels of the last decoder level that feed the probe_big border branch.
BORDER_CHANNELS = 4

_ENCODER_BY_N = {64: [32, 64, 128], 128: [16, 32, 64, 128], 256: [8, 16, 32, 64, 128]}
_DECODER_BY_N = {64: [64, 32], 128: [128, 64, 32], 256: [256, 128, 64, 32]}


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
