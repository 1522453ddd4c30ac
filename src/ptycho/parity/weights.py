"""Model and archive conversion between the PyTorch and TensorFlow backends.

The weights travel in the backend-neutral **torch layout state** of
:mod:`ptycho.backends.weight_transfer` (reading and writing it for either backend's model,
the state of an archive, and ``train --init_weights``); this module converts whole trained
models and archives with it.

Functions
---------
model_state
    The torch-layout state of a trained model of either backend.
build_model
    A ``TrainedModel`` of a backend built from a configuration (and optionally a state).
convert_model
    A trained model of one backend -> the same model in the other backend (in memory).
convert_archive
    ``MODEL_DIR/wts.h5.zip`` of one backend -> ``OUT_DIR/wts.h5.zip`` of the other
    (``ptychopinn convert``).
prediction_difference
    How far two models' predictions differ on a random batch.

PyTorch and TensorFlow are imported only inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ptycho.backends.weight_transfer import (
    BACKENDS,
    load_state_into_keras,
    load_state_into_torch,
    state_from_keras,
    state_from_torch,
)
from ptycho.errors import ArchiveError, InputError

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
    ``to``), ``nphotons``, the training history and (a model trained on several scans) the
    ``training_scans`` and ``probes.npy`` of the source; ``intensity_scale`` and the probe are
    the transferred weights.

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
                         nphotons=float(archive.manifest.get("nphotons", 0.0)),
                         training_scans=archive.manifest.get("training_scans")
                         if archive.probes is not None else None, probes=archive.probes)
    return path, source, converted


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
