"""``metrics.json`` and the plain-text metrics table.

``metrics.json`` is strict JSON (RFC 8259)::

    {"amplitude": {"psnr_db": ..., "ssim": ..., "mae": ..., "frc50_px": ..., "frc_half_bit_px": ...},
     "phase": {...same keys...},
     "registration_shift_px": [dy, dx]}

plus ``"phase_ramp_rad_per_px": [a, b]`` (radians per pixel along rows and columns) when the
evaluation removed the linear phase ramp. Non-finite values, which strict JSON cannot hold, are written as ``null`` (``psnr_db`` of a
perfect match is ``+inf``; an undefined metric is ``nan``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ptycho.fileio import write_text_atomic

COMPONENTS = ("amplitude", "phase")
METRIC_KEYS = ("psnr_db", "ssim", "mae", "frc50_px", "frc_half_bit_px")
_HEADERS = {"psnr_db": "PSNR [dB]", "ssim": "SSIM", "mae": "MAE", "frc50_px": "FRC 0.5 [px]",
            "frc_half_bit_px": "FRC 1/2-bit [px]"}


def _finite_or_none(value):
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metrics_to_json(metrics: dict) -> str:
    """Serialise the metrics dict as strict JSON text (non-finite floats become ``null``)."""
    return json.dumps(_finite_or_none(metrics), indent=2, allow_nan=False) + "\n"


def write_metrics_json(path: str | os.PathLike, metrics: dict) -> Path:
    """Write ``metrics`` to ``path`` (e.g. ``out/metrics.json``) atomically; return the path.

    Parameters
    ----------
    path : destination file
    metrics : dict
        As returned by :func:`ptycho.evaluation.evaluate_reconstruction`.
    """
    path = Path(path)
    write_text_atomic(path, metrics_to_json(metrics))
    return path


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def format_metrics_table(metrics: dict) -> str:
    """The metrics as a small fixed-width text table (amplitude and phase rows) plus the shift.

    Returns
    -------
    str
        Several lines, no trailing newline.
    """
    headers = [_HEADERS[key] for key in METRIC_KEYS]
    widths = [max(len(header), 10) for header in headers]
    lines = ["".ljust(10) + "  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    for component in COMPONENTS:
        values = metrics.get(component, {})
        cells = [_cell(values.get(key)).rjust(w) for key, w in zip(METRIC_KEYS, widths)]
        lines.append(component.ljust(10) + "  ".join(cells))
    shift = metrics.get("registration_shift_px")
    if shift is not None:
        lines.append(f"registration shift [dy, dx]: [{shift[0]:.3f}, {shift[1]:.3f}] px")
    ramp = metrics.get("phase_ramp_rad_per_px")
    if ramp is not None:
        lines.append(f"phase ramp removed [rows, cols]: [{ramp[0]:.4g}, {ramp[1]:.4g}] rad/px")
    return "\n".join(lines)


def format_metrics(metrics: dict) -> str:
    """Alias of :func:`format_metrics_table` (the name the train/infer commands use)."""
    return format_metrics_table(metrics)


def write_report(result, output_dir: str | os.PathLike, *, plot: bool = True,
                 title: str | None = None) -> list[Path]:
    """Write ``metrics.json`` (and ``comparison.png`` if ``plot``) of an evaluation, atomically.

    Parameters
    ----------
    result : ptycho.evaluation.EvaluationResult
    output_dir : folder (created if missing)
    plot : bool
    title : str, optional
        Figure title.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    output_dir = Path(output_dir)
    written = [write_metrics_json(output_dir / "metrics.json", result.metrics)]
    if plot:
        from ptycho.evaluation.plots import comparison_figure

        written.append(comparison_figure(result, output_dir / "comparison.png", title=title))
    return written


def evaluate_and_report(stitched, scan, output_dir: str | os.PathLike, *, plot: bool = True,
                        registration: str = "auto", remove_phase_ramp: bool = False) -> dict:
    """Evaluate a stitched object against ``scan.object_guess``; write the report files.

    The compared region is the bounding box of the scan positions intersected with the covered
    pixels (``stitched.weight > 0``).

    Parameters
    ----------
    stitched : ptycho.stitching.StitchedObject
    scan : ptycho.data.scan.Scan
        Must hold ``object_guess``.
    output_dir : folder for ``metrics.json`` and ``comparison.png``
    plot : bool
    registration : {'auto', 'amplitude', 'complex', 'none'}
    remove_phase_ramp : bool
        Remove the linear phase ramp before comparing (see
        :func:`ptycho.evaluation.compare_reconstruction`).

    Returns
    -------
    dict
        The metrics (see :func:`ptycho.evaluation.evaluate_reconstruction`).

    Raises
    ------
    ptycho.errors.InputError
        The scan has no ``objectGuess``, or the object does not overlap it.
    """
    from ptycho.errors import InputError
    from ptycho.evaluation.compare import compare_reconstruction, comparison_region

    if scan.object_guess is None:
        raise InputError("missing key", f"{Path(scan.source).name}:objectGuess",
                         "a scan holding the ground-truth object objectGuess (H, W)",
                         "no objectGuess")
    result = compare_reconstruction(stitched.object, stitched.x0_px, stitched.y0_px,
                                    scan.object_guess, registration=registration,
                                    remove_phase_ramp=remove_phase_ramp,
                                    **comparison_region(stitched, scan))
    write_report(result, output_dir, plot=plot)
    return result.metrics
