"""Legacy ``ptycho.model_manager`` facade: save the last trained model without passing it.

ptychodus 1.7.0 calls ``run_cdi_example(...)`` and then ``model_manager.save(output_path)``
with no model argument, and tells its GUI that ``<output_path>/wts.h5.zip`` holds the model.
:func:`ptycho.workflows.components.run_cdi_example` therefore records the trained model here
(module state, one per process) and :func:`save` writes it with
:func:`ptycho.archive.write_archive` to exactly ``<output_path>/wts.h5.zip``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptycho.errors import PtychoError

__all__ = ["clear", "last_trained", "load", "remember", "save"]

_state: dict[str, Any] = {}


class NoTrainedModelError(PtychoError, RuntimeError):
    """``save`` was called before any model was trained in this process."""


def remember(model, training_config, nphotons: float) -> None:
    """Record the model trained last (called by ``run_cdi_example``)."""
    _state.update(model=model, config=training_config, nphotons=float(nphotons))


def last_trained() -> Any | None:
    """The model recorded by :func:`remember`, or None."""
    return _state.get("model")


def clear() -> None:
    """Forget the recorded model."""
    _state.clear()


def save(output_path, *_args, **_kwargs) -> Path:
    """Write the last trained model to ``<output_path>/wts.h5.zip`` and return that path.

    ``output_path`` is a folder (created if needed). Extra arguments of older callers are
    ignored.

    Raises
    ------
    NoTrainedModelError
        No model was trained in this process.
    """
    from ptycho.archive import ARCHIVE_NAME, write_archive

    if "model" not in _state:
        raise NoTrainedModelError(
            "no trained model to save: run ptycho.workflows.components.run_cdi_example "
            "(or train) in this process first")
    folder = Path(output_path)
    folder.mkdir(parents=True, exist_ok=True)
    written = write_archive(folder, _state["model"], _state["config"], nphotons=_state["nphotons"])
    assert written == folder / ARCHIVE_NAME
    return written


def load(path):
    """Load a model archive (file, output folder or extracted folder); return the model."""
    from ptycho.archive import load_trained_model

    model, _archive = load_trained_model(path)
    return model
