"""Legacy ``ptycho.tf_helper`` facade. The name is historical: nothing here imports TensorFlow.

Only the function ptychodus calls is provided: :func:`reassemble_position`, which delegates to
:func:`ptycho.stitching.reassemble_position` (see that module for the canvas geometry).
"""

from __future__ import annotations

import numpy as np

from ptycho import stitching

__all__ = ["reassemble_position"]


def _to_numpy(value) -> np.ndarray:
    """NumPy view of an array, a CPU/GPU torch tensor or a TensorFlow eager tensor."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # torch
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy"):  # tensorflow eager
        return value.numpy()
    return np.asarray(value)


def reassemble_position(obj_tensor, global_offsets, M: int = stitching.DEFAULT_CROP_PX
                        ) -> np.ndarray:
    """Stitch predicted patches (b, N, N, 1) at ``global_offsets`` (b, 1, 2, 1).

    Returns
    -------
    ndarray, shape (S, S, 1), complex64
        ``numpy.squeeze`` of it is the 2-D stitched object.
    """
    return stitching.reassemble_position(_to_numpy(obj_tensor), _to_numpy(global_offsets), M=M)
