"""Figures drawn on matplotlib's Agg canvas and written as PNG atomically.

matplotlib's object-oriented API is used (``matplotlib.figure.Figure``, no pyplot), so drawing
never changes the backend of a host application (e.g. the ptychodus GUI) and works without a
display. matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

import os
from pathlib import Path

from ptycho.fileio import atomic_path


def agg_figure(figsize: tuple[float, float], dpi: int = 100):
    """A new ``matplotlib.figure.Figure`` of ``figsize`` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` to ``path`` as PNG through a temporary file (never half-written)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
