"""Framework-free description of the ``cnn`` architecture shared by both backends (design §4)."""

from __future__ import annotations

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
