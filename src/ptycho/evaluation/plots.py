"""``comparison.png``: truth, reconstruction and error for amplitude and phase, plus FRC curves.

Rendering uses :mod:`ptycho.figures` (Agg canvas, no pyplot: the backend of a host application
such as the ptychodus GUI is never changed; matplotlib is imported only when a figure is drawn).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ptycho.figures import agg_figure, save_png

_ROWS = (("amplitude", "Amplitude", "gray", ""), ("phase", "Phase", "viridis", " [rad]"))


def _masked(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, image, np.nan)


def _limits(*images: np.ndarray) -> tuple[float, float]:
    values = np.concatenate([image[np.isfinite(image)].ravel() for image in images])
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(np.min(values)), float(np.max(values))
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def _plot_frc(axis, curve, label: str) -> None:
    axis.plot(curve.frequency[1:], curve.frc[1:], color="C0", label=f"FRC ({label})")
    axis.axhline(0.5, color="C1", linestyle="--", linewidth=1.0,
                 label=f"0.5: {curve.frc50_px:.3g} px")
    axis.plot(curve.frequency[1:], curve.half_bit[1:], color="C2", linestyle=":",
              label=f"1/2-bit: {curve.frc_half_bit_px:.3g} px")
    for value, color in ((curve.frc50_px, "C1"), (curve.frc_half_bit_px, "C2")):
        if np.isfinite(value) and value > 0:
            axis.axvline(1.0 / value, color=color, linewidth=0.8, alpha=0.6)
    axis.set_xlim(0.0, 0.5)
    axis.set_ylim(-0.1, 1.05)
    axis.set_xlabel("spatial frequency [cycles/px]")
    axis.set_ylabel("FRC")
    axis.legend(loc="lower left", fontsize="small")
    axis.grid(True, alpha=0.3)


def comparison_figure(result, path: str | os.PathLike, *, title: str | None = None,
                      dpi: int = 100) -> Path:
    """Draw the comparison figure of an evaluation and write it as PNG, atomically.

    Layout: one row per component (amplitude, phase); columns truth, reconstruction (aligned,
    offset and scale removed), error (reconstruction - truth; for the phase the difference
    wrapped into (-pi, pi]) and the FRC curve with the 0.5 and 1/2-bit thresholds. Pixels
    outside the compared region are blank.

    Parameters
    ----------
    result : ptycho.evaluation.EvaluationResult
        From :func:`ptycho.evaluation.compare_reconstruction`.
    path : destination file, e.g. ``out/comparison.png``
    title : str, optional
        Figure title (default: the registration shift and scale).
    dpi : int

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    figure = agg_figure((17, 8), dpi)
    # fixed margins: a layout engine would double the drawing time (about 0.3 s)
    axes = figure.subplots(2, 4, gridspec_kw={"left": 0.02, "right": 0.98, "bottom": 0.08,
                                               "top": 0.9, "wspace": 0.22, "hspace": 0.22})
    mask = result.mask
    for row, (key, name, cmap, unit) in enumerate(_ROWS):
        truth, recon = (_masked(image, mask) for image in result.images[key])
        error = recon - truth
        low, high = _limits(truth, recon)
        bound = max(float(np.nanmax(np.abs(error))) if np.isfinite(error).any() else 0.0, 1e-12)
        panels = ((truth, f"{name}: truth{unit}", cmap, low, high),
                  (recon, f"{name}: reconstruction{unit}", cmap, low, high),
                  (error, f"{name}: error{unit}", "RdBu_r", -bound, bound))
        for column, (image, label, colormap, vmin, vmax) in enumerate(panels):
            axis = axes[row, column]
            shown = axis.imshow(image, cmap=colormap, vmin=vmin, vmax=vmax,
                                interpolation="nearest")
            axis.set_title(label)
            axis.set_xticks([])
            axis.set_yticks([])
            figure.colorbar(shown, ax=axis, shrink=0.8)
        _plot_frc(axes[row, 3], result.frc[key], name.lower())
    if title is None:
        dy, dx = result.metrics["registration_shift_px"]
        title = (f"registration shift [dy, dx] = [{dy:.2f}, {dx:.2f}] px, amplitude scale "
                 f"{result.amplitude_scale:.3g}, phase offset {result.phase_offset_rad:.3f} rad")
    figure.suptitle(title)
    return save_png(figure, path)


