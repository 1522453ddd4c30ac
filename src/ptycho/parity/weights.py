"""Weight transfer between the PyTorch and TensorFlow backends.

Both backends build the same network with the same parameter names (see
``ptycho.backends.tensorflow.network``). The backend-neutral form used here is the **torch
layout state**: a dict ``{torch state-dict key: ndarray}`` with conv kernels ``(out, in, 3, 3)``,
biases ``(out,)``, ``scaler.log_scale`` ``()`` and ``illumination.probe_ri`` ``(2, N, N)``.
The Keras side is paired with it by
:func:`ptycho.backends.tensorflow.model.torch_state_dict_mapping` (kernels transposed
``(3, 3, in, out)``; everything else identical). The torch buffer ``illumination.mask`` is a
constant of the configuration (``physics.probe_mask``) and is not transferred.

Functions
---------
state_from_torch, state_from_keras
    Read the torch-layout state of a torch ``PtychoPINN`` or a Keras ``PtychoPINN``.
load_state_into_torch, load_state_into_keras
    Write a torch-layout state into a model (all weights, or the generator only).
convert_model
    A trained model of one backend -> the same model in the other backend (in memory).
convert_archive
    ``MODEL_DIR/wts.h5.zip`` of one backend -> ``OUT_DIR/wts.h5.zip`` of the other
    (``ptychopinn convert``).
load_initial_weights
    Replace a freshly built model's generator weights by those of an archive of either backend
    (``ptychopinn train --init_weights``).

PyTorch and TensorFlow are imported only inside the functions that need them.
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
                         "weights of a model with the same N, gridsize, n_filters_scale, "
                         "object_big, probe_big and pad_object", "; ".join(detail))


def _check_shape(key: str, actual: tuple, expected: tuple, where: str) -> None:
    if tuple(actual) != tuple(expected):
        raise InputError("weights do not fit the model", f"{where}:{key}",
                         f"shape {tuple(expected)} (same N, gridsize and n_filters_scale)",
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


# ---------------------------------------------------------------------------------------------
# Trained models and archives
# ---------------------------------------------------------------------------------------------

def model_state(model) -> dict[str, np.ndarray]:
    """Torch-layout state of a trained model of either backend (``TrainedModel.module``)."""
    if model.backend == "pytorch":
        return state_from_torch(model.module)
    if model.backend == "tensorflow":
        return state_from_keras(model.module)
    raise ValueError(f"unknown backend {model.backend!r}")


def build_model(backend: str, model_config, probe: np.ndarray, intensity_scale: float,
                state: Mapping | None = None, history: dict | None = None):
    """A ``TrainedModel`` of ``backend`` built from a configuration (and optionally a state)."""
    if backend == "pytorch":
        from ptycho.backends.pytorch.model import PtychoPINN
        from ptycho.backends.pytorch.trained_model import TorchTrainedModel

        module = PtychoPINN(model_config, probe, intensity_scale)
        if state is not None:
            load_state_into_torch(module, state)
        return TorchTrainedModel(module, history)
    if backend == "tensorflow":
        from ptycho.backends import load_backend

        load_backend("tensorflow")      # Keras must run on TensorFlow
        from ptycho.backends.tensorflow.model import PtychoPINN
        from ptycho.backends.tensorflow.training import TFTrainedModel

        pinn = PtychoPINN(model_config, probe, intensity_scale)
        if state is not None:
            load_state_into_keras(pinn, state)
        return TFTrainedModel(pinn, history)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def convert_model(model, to: str):
    """The trained ``model`` (either backend) as a ``TrainedModel`` of backend ``to``.

    Every weight is transferred: conv kernels and biases, ``log_scale`` and the probe. The
    history is kept. A model already of backend ``to`` is returned unchanged.
    """
    if to not in BACKENDS:
        raise ValueError(f"unknown backend {to!r}; choose one of {', '.join(BACKENDS)}")
    if model.backend == to:
        return model
    return build_model(to, model.model_config, model.probe, model.intensity_scale,
                       state=model_state(model), history=dict(model.history or {}))


def convert_archive(model_dir: str | Path, out_dir: str | Path, to: str) -> tuple[Path, object, object]:
    """Convert a model archive to backend ``to`` and write ``<out_dir>/wts.h5.zip``.

    The new manifest keeps the model and training configuration (with ``backend`` set to
    ``to``), ``nphotons`` and the training history of the source; ``intensity_scale`` and the
    probe are the transferred weights.

    Returns
    -------
    (path, source_model, converted_model)

    Raises
    ------
    InputError
        Unknown target backend, an archive already of backend ``to``, or an output folder
        that would overwrite the source archive.
    """
    from ptycho.archive import ARCHIVE_NAME, read_archive, resolve_archive_path, write_archive
    from ptycho.backends import load_backend

    if to not in BACKENDS:
        raise InputError("invalid value", "--to", f"one of {', '.join(BACKENDS)}", repr(to))
    archive = read_archive(model_dir)
    made_by = archive.manifest.get("backend")
    if made_by not in BACKENDS:
        raise ArchiveError("unknown backend", archive.source, f"one of {', '.join(BACKENDS)}",
                           repr(made_by))
    if made_by == to:
        raise InputError("nothing to convert", archive.source,
                         f"an archive of the other backend (this one already is a '{to}' model; "
                         f"load it with --backend {to})")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("output path is a file", str(out_dir), "a folder (existing or new)")
    source_path = resolve_archive_path(model_dir).resolve()
    destination = (out_dir / ARCHIVE_NAME).resolve()
    if destination == source_path or (source_path.is_dir() and out_dir.resolve() == source_path):
        raise InputError("output would overwrite the source model", str(out_dir),
                         "a different output folder")
    source = load_backend(made_by).load_model(archive.manifest, archive.payload, archive.probe)
    converted = convert_model(source, to)
    training = dict(archive.manifest.get("training_config") or {})
    training["backend"] = to
    out_dir.mkdir(parents=True, exist_ok=True)
    path = write_archive(out_dir, converted, training,
                         nphotons=float(archive.manifest.get("nphotons", 0.0)))
    return path, source, converted


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
    state, _ = archive_state(path)
    where = str(path)
    if hasattr(module, "state_dict"):
        load_state_into_torch(module, state, generator_only=True, where=where)
    else:
        load_state_into_keras(module, state, generator_only=True, where=where)


def prediction_difference(first, second, batch_size: int = 2, seed: int = 0) -> tuple[float, float]:
    """``(max abs, max relative)`` difference of two models' predictions on a random batch.

    The batch is ``batch_size`` random normalised amplitudes (times the first model's
    intensity scale) with random sub-pixel group offsets; relative to ``max |second|``.
    """
    cfg = first.model_config
    channels = cfg.gridsize ** 2
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 2.0, (batch_size, cfg.N, cfg.N, channels)).astype(np.float32)
    offsets = rng.uniform(-3.0, 3.0, (batch_size, 1, 2, channels)).astype(np.float32)
    if channels == 1:
        offsets[:] = 0.0
    inputs = [x * np.float32(first.intensity_scale), offsets]
    a = np.asarray(first.predict(inputs), np.complex128)
    b = np.asarray(second.predict(inputs), np.complex128)
    max_abs = float(np.max(np.abs(a - b)))
    scale = float(np.max(np.abs(b)))
    return max_abs, (max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")))
