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
