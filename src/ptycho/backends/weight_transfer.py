"""Torch-layout weight state: the backend-neutral form of a model's weights (both backends).

Both backends build the same network with the same parameter names (see
``ptycho.backends.tensorflow.network``). The **torch layout state** is a dict
``{torch state-dict key: ndarray}`` with conv kernels ``(out, in, 3, 3)`` (``(out, in, 1, 1)``
for the ffno's pointwise layers), biases ``(out,)``, the ffno's spectral weights
``(width, width, modes)``, ``scaler.log_scale`` ``()`` and ``illumination.probe_ri``
``(2, N, N)``. The Keras side is paired with it by
:func:`ptycho.backends.tensorflow.model.torch_state_dict_mapping` (kernels transposed
``(k, k, in, out)``; everything else identical). The torch buffer
``illumination.mask`` is a constant of the configuration (``physics.probe_mask``) and is not
transferred.

Functions
---------
state_from_torch, state_from_keras
    Read the torch-layout state of a torch ``PtychoPINN`` or a Keras ``PtychoPINN``.
load_state_into_torch, load_state_into_keras
    Write a torch-layout state into a model (all weights, or the generator only).
archive_state
    The torch-layout state and manifest of a model archive of either backend.
load_initial_weights
    Replace a freshly built model's generator weights by those of an archive of either backend
    (``ptychopinn train --init_weights``; called by both backends' ``train_model``).

Whole-model and archive conversion (``ptychopinn convert``) is :mod:`ptycho.parity.weights`,
which builds on this module. PyTorch and TensorFlow are imported only inside the functions
that need them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ptycho.errors import ArchiveError, InputError

BACKENDS = ("pytorch", "tensorflow")
GENERATOR_PREFIX = "generator."
NOT_TRANSFERRED = ("illumination.mask",)   # configuration constants, rebuilt by each backend


def _is_generator(key: str) -> bool:
    return key.startswith(GENERATOR_PREFIX)


# ---------------------------------------------------------------------------------------------
# Reading states
# ---------------------------------------------------------------------------------------------

def state_from_torch(module) -> dict[str, np.ndarray]:
    """Torch-layout state (float32 arrays) of a torch ``PtychoPINN`` (buffers excluded)."""
    return {key: value.detach().cpu().numpy().copy()
            for key, value in module.state_dict().items() if key not in NOT_TRANSFERRED}


def state_from_keras(pinn) -> dict[str, np.ndarray]:
    """Torch-layout state of a Keras ``PtychoPINN`` (kernels transposed to ``(out, in, 3, 3)``)."""
    from ptycho.backends.tensorflow.model import torch_state_dict_mapping

    state = {}
    for key, (variable, layout) in torch_state_dict_mapping(pinn).items():
        value = np.asarray(variable.numpy())
        if layout == "conv_kernel":
            value = np.transpose(value, (3, 2, 0, 1))
        state[key] = np.array(value, order="C")  # ascontiguousarray would make 0-d 1-d
    return state


# ---------------------------------------------------------------------------------------------
# Writing states
# ---------------------------------------------------------------------------------------------

def _check_keys(expected: set[str], given: Mapping, where: str, generator_only: bool) -> None:
    missing = sorted(expected - set(given))
    extra = [] if generator_only else sorted(set(given) - expected - set(NOT_TRANSFERRED))
    if missing or extra:
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if extra:
            detail.append(f"unexpected {', '.join(extra[:4])}{' ...' if len(extra) > 4 else ''}")
        raise InputError("weights do not fit the model", where,
                         "weights of a model with the same architecture, N, gridsize, "
                         "n_filters_scale, object_big, probe_big and pad_object", "; ".join(detail))


def _check_shape(key: str, actual: tuple, expected: tuple, where: str) -> None:
    if tuple(actual) != tuple(expected):
        raise InputError("weights do not fit the model", f"{where}:{key}",
                         f"shape {tuple(expected)} (same architecture, N, gridsize and "
                         "n_filters_scale)",
                         f"shape {tuple(actual)}")


def load_state_into_torch(module, state: Mapping, *, generator_only: bool = False,
                          where: str = "weights") -> None:
    """Copy a torch-layout ``state`` into a torch ``PtychoPINN``.

    ``generator_only`` copies the conv kernels and biases and leaves ``log_scale`` and the
    probe as they are. Raises :class:`~ptycho.errors.InputError` when the state does not fit.
    """
    import torch

    own = module.state_dict()
    targets = {k for k in own if k not in NOT_TRANSFERRED and (_is_generator(k) or not generator_only)}
    _check_keys(targets, state, where, generator_only)
    new_state = dict(own)
    for key in targets:
        value = np.asarray(state[key])
        _check_shape(key, value.shape, own[key].shape, where)
        new_state[key] = torch.as_tensor(np.array(value, order="C"), dtype=own[key].dtype)
    module.load_state_dict(new_state)


def load_state_into_keras(pinn, state: Mapping, *, generator_only: bool = False,
                          where: str = "weights") -> None:
    """Copy a torch-layout ``state`` into a Keras ``PtychoPINN`` (kernels transposed)."""
    from ptycho.backends.tensorflow.model import torch_state_dict_mapping

    mapping = {k: v for k, v in torch_state_dict_mapping(pinn).items()
               if _is_generator(k) or not generator_only}
    _check_keys(set(mapping), state, where, generator_only)
    for key, (variable, layout) in mapping.items():
        value = np.asarray(state[key], np.float32)
        if layout == "conv_kernel":
            value = np.transpose(value, (2, 3, 1, 0))
        _check_shape(key, value.shape, tuple(variable.shape), where)
        variable.assign(value)


def archive_state(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Torch-layout state and manifest of the model archive at ``path`` (either backend)."""
    from ptycho.archive import read_archive
    from ptycho.backends import load_backend

    archive = read_archive(path)
    made_by = archive.manifest.get("backend")
    if made_by == "pytorch":
        import io

        import torch

        raw = torch.load(io.BytesIO(archive.payload), map_location="cpu", weights_only=True)
        state = {k: v.detach().cpu().numpy() for k, v in raw.items() if k not in NOT_TRANSFERRED}
        return state, archive.manifest
    if made_by == "tensorflow":
        model = load_backend("tensorflow").load_model(archive.manifest, archive.payload,
                                                      archive.probe)
        return state_from_keras(model.module), archive.manifest
    raise ArchiveError("unknown backend", archive.source, f"one of {', '.join(BACKENDS)}",
                       repr(made_by))


def load_initial_weights(module, path: str | Path) -> None:
    """Replace the generator weights of a freshly built model by those of an archive.

    Used by ``train --init_weights ARCHIVE``: ``module`` is the torch or Keras
    ``PtychoPINN`` about to be trained; ``path`` a model archive (or its folder) of either
    backend with the same network configuration. Only the generator (conv kernels and
    biases) is copied: the probe and the intensity scale still come from the training data.
    """
    state, manifest = archive_state(path)
    where = str(path)
    config = getattr(module, "model_config", None) or getattr(module, "config", None)
    made_with = (manifest.get("model_config") or {}).get("architecture", "cnn")
    if config is not None and made_with != config.architecture:
        raise InputError("weights do not fit the model", where,
                         f"an archive of the '{config.architecture}' architecture",
                         f"an archive of the '{made_with}' architecture")
    if hasattr(module, "state_dict"):
        load_state_into_torch(module, state, generator_only=True, where=where)
    else:
        load_state_into_keras(module, state, generator_only=True, where=where)
