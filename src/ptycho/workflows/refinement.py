"""Refinement workflow around :func:`ptycho.refine.refine`: starting objects, progress lines,
per-iteration ground-truth metrics and the output files of ``ptychopinn refine``.

Files written by :func:`write_refine_outputs` (atomically, see :mod:`ptycho.fileio`):

``reconstruction.npz``
    The keys of ``ptychopinn infer``'s file (``object``, ``x0_px``, ``y0_px``, ``weight`` = the
    summed probe intensity, 0 where not reconstructed, ``xcoords``/``ycoords`` = the final,
    possibly refined, positions) plus ``probe`` (N, N) complex64 (the forward model's probe,
    scaled to the counts) and ``xcoords_start``/``ycoords_start`` (the positions before
    refinement).
``reconstructed_amplitude.png``, ``reconstructed_phase.png``
``refine_history.csv``
    One row per iteration: ``iteration`` first, then every other history column
    (``misfit``, ``time_s`` and, with ground truth, the per-iteration SSIM/PSNR).
``misfit.png``
    The misfit against the iteration (log scale when every value is positive).
``metrics.json``, ``comparison.png``
    Only when the scan holds the ground truth (``objectGuess``).

Nothing here imports torch at import time.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ptycho.errors import InputError
from ptycho.figures import save_png
from ptycho.fileio import write_text_atomic
from ptycho.workflows.outputs import _figure, save_object_images, save_reconstruction_npz

log = logging.getLogger(__name__)

#: The history columns added by :func:`truth_metrics_callback`.
TRUTH_METRIC_KEYS = ("amplitude_ssim", "phase_ssim", "amplitude_psnr_db", "phase_psnr_db")


def initial_from_reconstruction(recon, scan, where: str = "--init"):
    """A :class:`ptycho.refine.InitialObject` from a read reconstruction, checked against ``scan``.

    Parameters
    ----------
    recon : ptycho.evaluation.Reconstruction
        E.g. from :func:`ptycho.evaluation.read_reconstruction` (``infer`` or ``refine`` output).
    scan : ptycho.data.scan.Scan
    where : str
        Named in the error (the option that gave the file).

    Raises
    ------
    ptycho.errors.InputError
        ``no overlap``: none of the reconstruction's covered pixels (``weight > 0``) lies in
        the area the scan's patterns illuminate.
    """
    from ptycho.refine import InitialObject

    valid = recon.valid
    covered = np.ones(recon.object.shape, bool) if valid is None else valid
    name = Path(recon.source).name
    half = scan.N / 2
    x_low, x_high = float(np.min(scan.xcoords)) - half, float(np.max(scan.xcoords)) + half
    y_low, y_high = float(np.min(scan.ycoords)) - half, float(np.max(scan.ycoords)) + half
    rows, cols = np.nonzero(covered)
    inside = ((cols + recon.x0_px >= x_low) & (cols + recon.x0_px <= x_high - 1)
              & (rows + recon.y0_px >= y_low) & (rows + recon.y0_px <= y_high - 1))
    if not inside.any():
        height, width = recon.object.shape
        raise InputError(
            "no overlap", f"{where} {name}",
            "a reconstruction of this scan (covering part of its scanned area "
            f"x {x_low:g}..{x_high:g}, y {y_low:g}..{y_high:g} px)",
            f"{int(covered.sum())} covered pixels of a {height}x{width} object at "
            f"x0={recon.x0_px:g}, y0={recon.y0_px:g}")
    return InitialObject(object=recon.object, x0_px=recon.x0_px, y0_px=recon.y0_px, valid=valid)


def truth_metrics_callback(scan) -> Callable[[int, object], dict] | None:
    """An ``on_iteration`` callback scoring every iteration against ``scan.object_guess``.

    The returned callable takes ``(iteration, snapshot)`` (a :class:`ptycho.refine.RefineResult`)
    and returns ``amplitude_ssim``, ``phase_ssim``, ``amplitude_psnr_db`` and
    ``phase_psnr_db`` (the metrics of ``metrics.json``: same region, registration and
    normalisation). None when the scan has no ground truth.
    """
    if scan.object_guess is None:
        return None
    from ptycho.evaluation import comparison_region, evaluate_reconstruction

    truth = scan.object_guess

    def metrics(iteration: int, snapshot) -> dict:
        result = evaluate_reconstruction(snapshot.object, snapshot.x0_px, snapshot.y0_px, truth,
                                         **comparison_region(snapshot.stitched, scan))
        return {"amplitude_ssim": result["amplitude"]["ssim"],
                "phase_ssim": result["phase"]["ssim"],
                "amplitude_psnr_db": result["amplitude"]["psnr_db"],
                "phase_psnr_db": result["phase"]["psnr_db"]}

    return metrics


class IterationLog:
    """``on_iteration`` callback for :func:`ptycho.refine.refine` that logs one INFO line per
    iteration (the progress display of ``ptychopinn refine``)::

        iteration 3/20: misfit 6.042, 0.4 s, amplitude SSIM 0.555, phase SSIM 0.725

    The misfit and the solver seconds are the iteration's history row. ``metrics`` (e.g.
    :func:`truth_metrics_callback`) is called first and its numbers are returned to the
    history; its SSIMs are shown.

    Parameters
    ----------
    iterations : int
        The total, shown as ``k/K``.
    metrics : callable(iteration, snapshot) -> dict, optional
    logger : logging.Logger, optional
    """

    def __init__(self, iterations: int, metrics: Callable | None = None,
                 logger: logging.Logger | None = None):
        self.iterations = int(iterations)
        self.metrics = metrics
        self.log = logger or log

    def __call__(self, iteration: int, snapshot) -> dict:
        extra = self.metrics(iteration, snapshot) if self.metrics is not None else {}
        history = snapshot.history
        parts = [f"iteration {iteration}/{self.iterations}: misfit {history['misfit'][-1]:.6g}",
                 f"{history['time_s'][-1]:.1f} s"]
        for key, label in (("amplitude_ssim", "amplitude SSIM"), ("phase_ssim", "phase SSIM")):
            if key in extra:
                parts.append(f"{label} {extra[key]:.3f}")
        self.log.info(", ".join(parts))
        return extra


def save_history_table(history: dict, path: Path) -> Path:
    """``refine_history.csv``: one row per iteration, ``iteration`` first, then the other keys
    of ``history`` in their order (full float precision)."""
    columns = ["iteration", *(key for key in history if key != "iteration")]
    rows = len(history.get("iteration", []))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for i in range(rows):
        writer.writerow([_csv_value(history.get(c, []), i) for c in columns])
    write_text_atomic(path, buffer.getvalue())
    return path


def _csv_value(values: list, index: int):
    if index >= len(values):
        return ""
    value = values[index]
    return repr(float(value)) if isinstance(value, (float, np.floating)) else value


def plot_misfit(history: dict, path: Path, noise_model: str | None = None) -> Path:
    """``misfit.png``: the misfit against the iteration (log y when every value is > 0; the
    Poisson misfit can be negative)."""
    fig, ax = _figure((6, 4), left=0.15, right=0.97, bottom=0.13, top=0.95)
    iterations = history.get("iteration", [])
    misfit = history.get("misfit", [])
    ax.plot(iterations[:len(misfit)], misfit, marker="o")
    if misfit and min(misfit) > 0:
        ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("misfit" if noise_model is None else f"misfit ({noise_model})")
    ax.grid(alpha=0.3, which="both")
    return save_png(fig, path)


def write_refine_outputs(result, output_dir: str | Path, scan) -> dict:
    """Write the files of ``ptychopinn refine`` (module docstring) into ``output_dir``.

    Parameters
    ----------
    result : ptycho.refine.RefineResult
    output_dir : folder (created if missing)
    scan : ptycho.data.scan.Scan
        The refined scan: its positions are stored as ``xcoords_start``/``ycoords_start``; with
        ``object_guess`` the metrics are computed.

    Returns
    -------
    dict
        The final metrics (see :func:`ptycho.evaluation.evaluate_reconstruction`); empty
        without ground truth.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stitched = result.stitched
    extra = {"probe": np.asarray(result.probe, np.complex64),
             "xcoords_start": np.asarray(scan.xcoords, np.float64),
             "ycoords_start": np.asarray(scan.ycoords, np.float64)}
    save_reconstruction_npz(stitched, np.asarray(result.positions_xy, np.float64),
                            output_dir / "reconstruction.npz", extra=extra)
    save_object_images(result.object, output_dir, result.weight)
    save_history_table(result.history, output_dir / "refine_history.csv")
    plot_misfit(result.history, output_dir / "misfit.png",
                getattr(result.options, "noise_model", None))
    if scan.object_guess is None:
        return {}
    from ptycho.evaluation import evaluate_and_report

    return evaluate_and_report(stitched, scan, output_dir)
