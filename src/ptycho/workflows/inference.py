"""Inference workflow: archive + scan -> grouped predict -> stitched object -> files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptycho.data.grouping import GroupedData
from ptycho.data.scan import Scan
from ptycho.errors import InputError
from ptycho.stitching import DEFAULT_CROP_PX, StitchedObject, stitch_patches
from ptycho.workflows.outputs import save_object_images, save_reconstruction_npz

log = logging.getLogger(__name__)


@dataclass
class InferenceResult:
    """A reconstruction: the stitched object, the patches and where they were placed."""

    stitched: StitchedObject
    patches: np.ndarray
    positions_xy: np.ndarray


def reconstruct(model, scan: Scan, *, batch_size: int = 256, neighbor_count: int = 4,
                crop_px: int = DEFAULT_CROP_PX, seed: int = 0) -> InferenceResult:
    """Group every scan position, predict object patches and stitch them.

    Parameters
    ----------
    model : TrainedModel (see ``ptycho.backends.base``)
    scan : Scan
        Its pattern size must equal the model's N.
    """
    cfg = model.model_config
    if scan.N != cfg.N:
        raise InputError("patch size mismatch", f"{Path(scan.source).name}:diff3d",
                         f"{cfg.N}x{cfg.N} patterns like the model", f"{scan.N}x{scan.N}")
    grouped = GroupedData.from_scan(scan, cfg.gridsize, neighbor_count=neighbor_count, seed=seed)
    coords = grouped.coords()
    patches = model.predict([grouped.X() * np.float32(model.intensity_scale), coords["relative"]],
                            batch_size=batch_size)[..., 0]
    positions = coords["offsets"][:, 0, :, 0]
    stitched = stitch_patches(patches, positions, M=crop_px)
    return InferenceResult(stitched=stitched, patches=patches, positions_xy=positions)


def write_outputs(result: InferenceResult, output_dir: Path, scan: Scan | None = None) -> dict:
    """Write images, ``reconstruction.npz`` and, with ground truth, metrics and a comparison.

    Returns the metrics dict (empty without ``objectGuess``).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_reconstruction_npz(result.stitched, result.positions_xy, output_dir / "reconstruction.npz")
    save_object_images(result.stitched.object, output_dir, result.stitched.weight)
    if scan is None or scan.object_guess is None:
        return {}
    from ptycho.evaluation import evaluate_and_report

    return evaluate_and_report(result.stitched, scan, output_dir)
