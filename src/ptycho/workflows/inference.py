"""Inference workflow: archive + scan -> grouped predict -> stitched object -> files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptycho.config.config import DEFAULT_PREDICT_BATCH
from ptycho.data.grouping import GroupedData
from ptycho.data.scan import Scan
from ptycho.errors import InputError
from ptycho.stitching import DEFAULT_CROP_PX, StitchedObject, Stitcher, probe_weight
from ptycho.workflows.outputs import save_object_images, save_reconstruction_npz

log = logging.getLogger(__name__)

STITCH_WEIGHTS = ("crop", "probe")
DEFAULT_STITCH_WEIGHT = "probe"
"""Stitching of the CLI and this API; the ptychodus path (``ptycho.workflows.components``,
``ptycho.tf_helper``) keeps the uniform crop of M=20 that ptychodus passes."""
DEFAULT_CHUNK_GROUPS = 4096
"""Groups predicted and stitched per step (bounds memory on large scans)."""


@dataclass
class InferenceResult:
    """A reconstruction: the stitched object, the patches and where they were placed.

    ``patches`` (n, N, N) complex64 is None when they were not kept (large scans).
    """

    stitched: StitchedObject
    patches: np.ndarray | None
    positions_xy: np.ndarray


def reconstruct(model, scan: Scan, *, batch_size: int = DEFAULT_PREDICT_BATCH, neighbor_count: int = 4,
                crop_px: int | None = None, seed: int = 0,
                chunk_groups: int = DEFAULT_CHUNK_GROUPS,
                keep_patches: bool = False,
                stitch_weight: str = DEFAULT_STITCH_WEIGHT,
                probe: np.ndarray | None = None) -> InferenceResult:
    """Group every scan position, predict object patches and stitch them, chunk by chunk.

    Patterns are read, predicted and stitched ``chunk_groups`` groups at a time, so memory
    stays bounded for scans of any length (patterns may be streamed from disk, see
    :mod:`ptycho.data.lazy`); the result does not depend on ``chunk_groups``.

    Parameters
    ----------
    model : TrainedModel (see ``ptycho.backends.base``)
    scan : Scan
        Its pattern size must equal the model's N.
    batch_size : int
        Samples per ``model.predict`` batch.
    crop_px : int, optional
        Side M of the central crop of each patch that is stitched (default: N/2 for 'probe',
        20 for 'crop').
    stitch_weight : {'probe', 'crop'}
        'probe' (the default) weights every crop pixel by the model's probe intensity
        ``|P|**2`` (:func:`ptycho.stitching.probe_weight`), which suppresses the scan-step
        texture of poorly lit pixels (measured: amplitude SSIM 0.27 -> 0.46 after a 10-epoch
        training, see ``tests/torch/test_quality_torch.py``); 'crop' averages the crops
        uniformly (the reference behaviour of ``ptycho.stitching``, which the ptychodus path
        keeps with M=20).
    chunk_groups : int
        Groups per predict-and-stitch step (rounded up to a multiple of ``batch_size``).
    keep_patches : bool
        Return the whole predicted patches in ``InferenceResult.patches`` (n, N, N) (memory:
        n * N * N * 8 bytes). Without them the model is asked only for the central
        ``crop_px`` pixels that stitching uses (``central_px``, faster for gridsize 1).
    probe : ndarray, shape (N, N) or (M, N, N), complex, optional
        The probe whose intensity (summed over the modes of a mixed-state probe) weights the
        stitching (``stitch_weight='probe'``; only its shape matters, not its scale); default
        ``model.probe``. See :func:`stitching_probe`.

    The scan is normalised with its own factor (``GroupedData.from_scan``) and its patterns
    are fed as ``X * model.intensity_scale``, which the network divides by its own scale: the
    prediction depends neither on the scan's photon count nor on the model's scale.
    """
    cfg = model.model_config
    if stitch_weight not in STITCH_WEIGHTS:
        raise InputError("invalid value", "stitch_weight", "one of " + ", ".join(STITCH_WEIGHTS),
                         repr(stitch_weight))
    if crop_px is None:
        crop_px = DEFAULT_CROP_PX if stitch_weight == "crop" else cfg.N // 2
    if isinstance(crop_px, bool) or int(crop_px) != crop_px or not 0 < crop_px <= cfg.N:
        raise InputError("invalid value", "crop_px", f"an integer in 1..{cfg.N} (the patch size)",
                         repr(crop_px))
    if scan.N != cfg.N:
        raise InputError("patch size mismatch", f"{Path(scan.source).name}:diff3d",
                         f"{cfg.N}x{cfg.N} patterns like the model", f"{scan.N}x{scan.N}")
    grouped = GroupedData.from_scan(scan, cfg.gridsize, neighbor_count=neighbor_count, seed=seed)
    n_groups = len(grouped)
    step = max(1, -(-max(1, chunk_groups) // batch_size)) * batch_size
    positions = np.empty((n_groups, 2), np.float64)
    for lo in range(0, n_groups, step):
        rows = np.arange(lo, min(lo + step, n_groups))
        positions[rows] = grouped.coords(rows)["offsets"][:, 0, :, 0]
    central_px = None if keep_patches else crop_px
    pixel_weight = (probe_weight(model.probe if probe is None else probe, crop_px)
                    if stitch_weight == "probe" else None)
    stitcher = Stitcher(positions, M=crop_px, pixel_weight=pixel_weight)
    kept = []
    scale = np.float32(model.intensity_scale)
    for lo in range(0, n_groups, step):
        rows = np.arange(lo, min(lo + step, n_groups))
        patches = model.predict([grouped.X(rows) * scale, grouped.coords(rows)["relative"]],
                                batch_size=batch_size, central_px=central_px)[..., 0]
        stitcher.add(patches, positions[rows])
        if keep_patches:
            kept.append(patches)
    patches = (np.concatenate(kept) if kept else np.zeros((0, cfg.N, cfg.N), np.complex64)
               ) if keep_patches else None
    return InferenceResult(stitched=stitcher.result(), patches=patches, positions_xy=positions)


def stitching_probe(model, scan: Scan, training_scans: int = 1) -> np.ndarray:
    """The probe that weights the stitching of ``scan`` and starts its refinement.

    A model trained on one scan keeps that experiment's (possibly trained) probe,
    ``model.probe``, as before. A model trained on several scans (``training_scans`` > 1,
    :func:`ptycho.archive.training_scan_count`) has no probe of its own for a new experiment:
    the scan's own probe, made and normalised as in training (:meth:`Scan.initial_probe`
    for ``ModelConfig.probe_modes``, ``probe_scale``), shape (N, N), or (M, N, N) modes,
    complex.
    """
    if training_scans > 1:
        from ptycho import physics

        cfg = model.model_config
        return physics.normalize_probe(scan.initial_probe(cfg.probe_modes), cfg.probe_scale)
    return model.probe


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


def refine_reconstruction(result: InferenceResult, scan: Scan, options=None, *, probe=None,
                          on_iteration=None):
    """Polish a network reconstruction with the iterative solver (:func:`ptycho.refine.refine`).

    The solver starts from the stitched object (its covered pixels, ``weight > 0``; elsewhere
    a flat continuation) on the scan's grid.

    Parameters
    ----------
    result : InferenceResult
        From :func:`reconstruct` on ``scan``.
    scan : Scan
        The scan that was reconstructed (patterns, positions and probe).
    options : ptycho.refine.RefineOptions, optional
    probe : ndarray, shape (N, N) or (M, N, N), complex, optional
        Starting probe instead of ``scan.probe``, e.g. the model's trained probe
        (``model.probe``, all its modes), which ``ptychopinn infer --refine-iterations`` uses.
    on_iteration : callable, optional
        Passed to :func:`ptycho.refine.refine`.

    Returns
    -------
    ptycho.refine.RefineResult
    """
    from ptycho.refine import InitialObject, refine

    stitched = result.stitched
    initial = InitialObject(object=stitched.object, x0_px=float(stitched.x0_px),
                            y0_px=float(stitched.y0_px), valid=np.asarray(stitched.weight) > 0)
    return refine(scan, initial, options, probe=probe, on_iteration=on_iteration)
