"""Legacy ``ptycho.workflows.components`` facade: the workflow calls ptychodus makes.

* :func:`run_cdi_example` trains (:func:`ptycho.workflows.training.train`, writing **no**
  files), records the model for :func:`ptycho.model_manager.save`, and reconstructs the test
  scan (:func:`ptycho.workflows.inference.reconstruct`).
* :func:`save_outputs` writes the history, loss curve, reconstruction and images into a real
  output folder, and nothing at all for ``Path()`` / ``'.'`` / ``''`` (the "not used" output
  folder ptychodus puts in its configs).
* :func:`load_inference_bundle` loads ``d/wts.h5.zip`` or an extracted archive folder ``d``,
  sets ``ptycho.params.cfg['intensity_scale']`` and returns ``(model, cfg_dict)``.

Backends are imported only when these functions run.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

# Older ptychodus uses ptycho.probe and ptycho.tf_helper without importing them.
import ptycho.probe
import ptycho.tf_helper  # noqa: F401
from ptycho import model_manager, params
from ptycho.config.config import (
    DEFAULT_PREDICT_BATCH,
    ExecutionConfig,
    TrainingConfig,
    dataclass_to_legacy_dict,
    update_legacy_dict,
)
from ptycho.data.scan import Scan
from ptycho.errors import InputError
from ptycho.stitching import DEFAULT_CROP_PX

log = logging.getLogger(__name__)

__all__ = ["BundleModel", "load_inference_bundle", "run_cdi_example", "save_outputs"]


def _as_scan(data, measurement: str = "auto", where: str = "data") -> Scan:
    """A :class:`Scan` from a RawData, a Scan or an NPZ path."""
    from ptycho.raw_data import RawData

    if isinstance(data, RawData):
        return data.scan
    if isinstance(data, Scan):
        return data
    if isinstance(data, (str, Path)):
        return RawData.from_file(data, measurement).scan
    raise InputError("wrong argument", where, "a RawData, a Scan or a scan .npz path",
                     type(data).__name__)


def _quiet_execution() -> ExecutionConfig:
    """Execution settings that write nothing (no logger files) and print no progress bar."""
    return ExecutionConfig(logger="none", progress_bar=False)


def run_cdi_example(train_data, test_data, config: TrainingConfig, flip_x: bool = False,
                    flip_y: bool = False, transpose: bool = False, M: int = DEFAULT_CROP_PX,
                    do_stitching: bool = True, execution: ExecutionConfig | None = None):
    """Train on ``train_data`` and reconstruct ``test_data``, writing no files.

    Parameters
    ----------
    train_data, test_data : RawData, Scan or path to a scan NPZ (``test_data`` may be None)
    config : TrainingConfig
        ``config.model.N == 0`` is set from the data. ``config.output_dir`` is not written to.
    flip_x, flip_y, transpose : bool
        Orientation of the returned amplitude/phase images (transpose first, then flips).
    M : int
        Central crop of each patch used for stitching, averaged uniformly (``stitch_weight=
        'crop'``, as ptychodus expects; the CLI and ``inference.reconstruct`` default to
        probe weighting instead).
    do_stitching : bool
        Reconstruct ``test_data`` (when given).
    execution : ExecutionConfig, optional
        Default: no logger files, no progress bar.

    Returns
    -------
    (recon_amp, recon_phase, results)
        Amplitude and phase (H, W) of the stitched test object, or ``(None, None)`` without
        test data; ``results`` holds ``history``, ``intensity_scale``, ``model``,
        ``nphotons``, ``training`` (TrainingResult) and, with test data, ``stitched``
        (StitchedObject), ``positions_xy`` and ``reconstruction`` (InferenceResult).
    """
    from ptycho.workflows import inference, training

    execution = execution or _quiet_execution()
    train_scan = _as_scan(train_data, config.measurement, "train_data")
    result = training.train(config, execution, train_scan=train_scan, write_outputs=False)
    model = result.model
    model_manager.remember(model, config, result.nphotons)
    update_legacy_dict(params.cfg, config)
    params.set("intensity_scale", float(model.intensity_scale))
    results: dict[str, Any] = {
        "history": result.history,
        "intensity_scale": float(model.intensity_scale),
        "model": model,
        "nphotons": result.nphotons,
        "training": result,
    }
    if test_data is None or not do_stitching:
        return None, None, results

    test_scan = _as_scan(test_data, config.measurement, "test_data")
    recon = inference.reconstruct(model, test_scan, batch_size=execution.inference_batch_size,
                                  neighbor_count=config.neighbor_count, crop_px=M,
                                  stitch_weight="crop")
    results.update(stitched=recon.stitched, positions_xy=recon.positions_xy, reconstruction=recon)
    obj = recon.stitched.object
    if transpose:
        obj = obj.T
    if flip_x:
        obj = obj[:, ::-1]
    if flip_y:
        obj = obj[::-1, :]
    return np.abs(obj), np.angle(obj), results


def _is_unset_output(output_prefix) -> bool:
    return output_prefix is None or Path(str(output_prefix)) == Path(".")


def save_outputs(amplitude, phase, results: dict | None, output_prefix) -> list[Path]:
    """Write what :func:`run_cdi_example` produced into the folder ``output_prefix``.

    Files: ``history.csv`` and ``loss_curve.png`` (with a history), ``reconstruction.npz``
    (with a stitched object), ``reconstructed_amplitude.png`` and ``reconstructed_phase.png``
    (with amplitude and phase). ``output_prefix`` of None, ``''``, ``'.'`` or ``Path()``
    writes nothing (the current folder is never written to implicitly).

    Returns
    -------
    list of Path
        The files written.
    """
    if _is_unset_output(output_prefix):
        log.info("save_outputs: no output folder given (%r); nothing written", output_prefix)
        return []
    from ptycho.workflows import outputs

    folder = Path(output_prefix)
    folder.mkdir(parents=True, exist_ok=True)
    results = results or {}
    written: list[Path] = []
    history = results.get("history")
    if history and history.get("epoch"):
        written.append(outputs.save_history_csv(history, folder / "history.csv"))
        written.append(outputs.plot_loss_curve(history, folder / "loss_curve.png"))
    stitched = results.get("stitched")
    if stitched is not None and results.get("positions_xy") is not None:
        written.append(outputs.save_reconstruction_npz(stitched, results["positions_xy"],
                                                       folder / "reconstruction.npz"))
    if amplitude is not None and phase is not None:
        obj = np.asarray(amplitude) * np.exp(1j * np.asarray(phase))
        weight = stitched.weight if stitched is not None else None
        if weight is not None and weight.shape != obj.shape:
            weight = None  # flipped/transposed images
        written.extend(outputs.save_object_images(obj, folder, weight))
    return written


class BundleModel:
    """A loaded model whose ``predict`` explains a gridsize mismatch in ptychodus terms.

    Every other attribute is the wrapped backend model's (``model_config``,
    ``intensity_scale``, ``probe``, ``history``, ...).
    """

    def __init__(self, model, source: str):
        self._model = model
        self._source = source

    def predict(self, inputs, batch_size: int = DEFAULT_PREDICT_BATCH,
                central_px: int | None = None) -> np.ndarray:
        """``[X * intensity_scale (b, N, N, C), local_offsets (b, 1, 2, C)]``.

        Returns complex (b, N, N, 1); ``central_px`` as in ``ptycho.backends.base``.
        """
        gridsize = int(self._model.model_config.gridsize)
        shape = tuple(np.shape(inputs[0]))
        if len(shape) == 4 and shape[-1] != gridsize ** 2:
            got = math.isqrt(shape[-1])
            got_text = f"gridsize {got}" if got * got == shape[-1] else "no square gridsize"
            raise InputError(
                "gridsize mismatch", f"model {self._source}",
                f"data grouped with gridsize {gridsize} ({gridsize ** 2} pattern(s) per sample) "
                f"as the model was trained; in ptychodus set the PtychoPINN model GridSize to "
                f"{gridsize}, or train a model with the gridsize you need",
                f"{shape[-1]} pattern(s) per sample, {got_text}")
        return self._model.predict(inputs, batch_size=batch_size, central_px=central_px)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("_model", "_source"):
            raise AttributeError(name)
        return getattr(self._model, name)

    def __repr__(self) -> str:
        return f"BundleModel({self._model!r}, source={self._source!r})"


def _locate_bundle(model_dir) -> Path:
    """``model_dir``, or its only subfolder holding the model when ``model_dir`` itself does not.

    A user's zip of a whole training output folder extracts (ptychodus "Open Model") to a
    folder whose single subfolder holds ``wts.h5.zip``.
    """
    from ptycho.archive import ARCHIVE_NAME, MANIFEST_NAME

    path = Path(model_dir)
    if not path.is_dir() or (path / ARCHIVE_NAME).is_file() or (path / MANIFEST_NAME).is_file():
        return path
    candidates = [child for child in path.iterdir() if child.is_dir() and not child.is_symlink()
                  and ((child / ARCHIVE_NAME).is_file() or (child / MANIFEST_NAME).is_file())]
    return candidates[0] if len(candidates) == 1 else path


def load_inference_bundle(model_dir) -> tuple[BundleModel, dict]:
    """Load a trained model for inference.

    Parameters
    ----------
    model_dir : path
        A folder holding ``wts.h5.zip``, a folder that *is* an extracted archive (what
        ptychodus makes of an opened ``model.zip``), a folder whose only subfolder is one of
        these, or the archive file itself.

    Returns
    -------
    (model, cfg_dict)
        ``model.predict([X * s, local_offsets])`` returns complex (b, N, N, 1);
        ``cfg_dict`` holds the legacy keys of the model's configuration plus
        ``intensity_scale``, ``backend`` and ``archive``. ``ptycho.params.cfg`` is updated
        with the same values (``intensity_scale`` = the trained scale).
    """
    from ptycho.archive import load_trained_model

    model, archive = load_trained_model(_locate_bundle(model_dir))
    cfg_dict = dataclass_to_legacy_dict(model.model_config)
    cfg_dict.update(intensity_scale=float(model.intensity_scale), backend=model.backend,
                    archive=archive.source)
    params.cfg.update(cfg_dict)
    log.info("loaded %s model from %s (N=%d, gridsize=%d, intensity_scale=%.6g)", model.backend,
             archive.source, model.model_config.N, model.model_config.gridsize,
             model.intensity_scale)
    return BundleModel(model, archive.source), cfg_dict
