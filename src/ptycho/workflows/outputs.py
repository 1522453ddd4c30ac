"""Files written by the workflows: history, loss curve, reconstruction arrays and images.

Every file is written atomically (temporary name in the destination folder, then rename).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ptycho.fileio import atomic_path, write_text_atomic
from ptycho.stitching import StitchedObject


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_history_csv(history: dict, path: Path) -> Path:
    """Write per-epoch metrics (epoch, train_loss, val_loss, intensity_scale, learning_rate)."""
    columns = [k for k in ("epoch", "train_loss", "val_loss", "intensity_scale", "learning_rate")
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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = history.get("epoch", [])
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        values = history.get(key) or []
        if values:
            ax.plot(epochs[:len(values)], values, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (Poisson NLL)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def save_reconstruction_npz(stitched: StitchedObject, positions_xy: np.ndarray, path: Path) -> Path:
    """``reconstruction.npz``: ``object`` complex64 (H, W); ``x0_px``/``y0_px`` the scan-coordinate
    column/row of ``object[0, 0]``; ``weight`` overlap count (H, W); ``xcoords``/``ycoords`` the
    positions at which patches were placed (object pixels)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, object=stitched.object, x0_px=np.float64(stitched.x0_px),
                     y0_px=np.float64(stitched.y0_px), weight=stitched.weight,
                     xcoords=positions_xy[:, 0], ycoords=positions_xy[:, 1])
    return path


def save_object_images(obj: np.ndarray, output_dir: Path, weight: np.ndarray | None = None) -> list[Path]:
    """``reconstructed_amplitude.png`` (gray) and ``reconstructed_phase.png`` (viridis) with colour bars.

    Pixels with zero overlap weight are shown blank.
    """
    plt = _pyplot()
    covered = weight > 0 if weight is not None else np.ones(obj.shape, bool)
    written = []
    for name, values, cmap in (("reconstructed_amplitude.png", np.abs(obj), "gray"),
                               ("reconstructed_phase.png", np.angle(obj), "viridis")):
        fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
        image = ax.imshow(np.ma.masked_where(~covered, values), cmap=cmap)
        ax.set_title(name.removesuffix(".png").replace("_", " "))
        fig.colorbar(image, ax=ax, fraction=0.046)
        fig.tight_layout()
        with atomic_path(output_dir / name) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        written.append(output_dir / name)
    return written
