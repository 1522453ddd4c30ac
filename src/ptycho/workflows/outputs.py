"""Files written by the workflows: history, loss curve, reconstruction arrays and images.

Every file is written atomically (temporary name in the destination folder, then rename).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ptycho.figures import agg_figure, save_png
from ptycho.fileio import atomic_path, write_text_atomic
from ptycho.stitching import StitchedObject


def _figure(figsize: tuple[float, float], **subplot_margins):
    """An Agg figure (:func:`ptycho.figures.agg_figure`) with one axis and fixed margins."""
    figure = agg_figure(figsize)
    figure.subplots_adjust(**subplot_margins)
    return figure, figure.add_subplot()


def save_history_csv(history: dict, path: Path) -> Path:
    """Write per-epoch metrics (epoch, train_loss, val_loss, intensity_scale, learning_rate,
    epoch_time_s: wall seconds of the epoch)."""
    columns = [k for k in ("epoch", "train_loss", "val_loss", "intensity_scale", "learning_rate",
                           "epoch_time_s")
               if isinstance(history.get(k), list) and history.get(k)]
    rows = len(history.get("epoch", []))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for i in range(rows):
        writer.writerow([history[c][i] if i < len(history[c]) else "" for c in columns])
    write_text_atomic(path, buffer.getvalue())
    return path


def plot_loss_curve(history: dict, path: Path) -> Path:
    """Training (and validation) loss against epoch, as PNG."""
    fig, ax = _figure((6, 4), left=0.15, right=0.97, bottom=0.13, top=0.95)
    epochs = history.get("epoch", [])
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        values = history.get(key) or []
        if values:
            ax.plot(epochs[:len(values)], values, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (Poisson NLL)")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_png(fig, path)


def save_reconstruction_npz(stitched: StitchedObject, positions_xy: np.ndarray, path: Path,
                            extra: dict | None = None) -> Path:
    """``reconstruction.npz``: ``object`` complex64 (H, W); ``x0_px``/``y0_px`` the scan-coordinate
    column/row of ``object[0, 0]``; ``weight`` overlap count (H, W); ``xcoords``/``ycoords`` the
    positions at which patches were placed (object pixels).

    ``extra`` maps further key names to arrays stored alongside (e.g. ``probe`` and the starting
    positions of ``ptychopinn refine``); it may not replace one of the keys above.
    """
    arrays = {"object": stitched.object, "x0_px": np.float64(stitched.x0_px),
              "y0_px": np.float64(stitched.y0_px), "weight": stitched.weight,
              "xcoords": positions_xy[:, 0], "ycoords": positions_xy[:, 1]}
    clash = sorted(set(extra or {}) & set(arrays))
    if clash:
        raise ValueError(f"extra arrays may not replace the standard keys {clash}")
    arrays.update({key: np.asarray(value) for key, value in (extra or {}).items()})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return path


def save_object_images(obj: np.ndarray, output_dir: Path, weight: np.ndarray | None = None) -> list[Path]:
    """``reconstructed_amplitude.png`` (gray) and ``reconstructed_phase.png`` (viridis) with colour bars.

    Pixels with zero overlap weight are shown blank.
    """
    covered = weight > 0 if weight is not None else np.ones(obj.shape, bool)
    written = []
    for name, values, cmap in (("reconstructed_amplitude.png", np.abs(obj), "gray"),
                               ("reconstructed_phase.png", np.angle(obj), "viridis")):
        fig, ax = _figure((6, 6), left=0.08, right=0.88, bottom=0.04, top=0.94)
        image = ax.imshow(np.ma.masked_where(~covered, values), cmap=cmap)
        ax.set_title(name.removesuffix(".png").replace("_", " "))
        fig.colorbar(image, ax=ax, fraction=0.046)
        written.append(save_png(fig, output_dir / name))
    return written
