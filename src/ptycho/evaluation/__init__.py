"""Evaluation of a reconstruction against the ground truth (NumPy / SciPy / scikit-image only).

Modules
-------
registration
    Placement on the truth grid, sub-pixel registration, global phase / amplitude scale,
    the optional linear phase ramp (:func:`~ptycho.evaluation.registration.fit_phase_ramp`).
metrics
    PSNR (data range from the truth), SSIM, MAE.
frc
    Fourier ring correlation with the 0.5 and 1/2-bit thresholds.
compare
    The pipeline: :func:`evaluate_reconstruction` (metrics dict),
    :func:`compare_reconstruction` (metrics plus aligned images and FRC curves),
    :func:`flat_baseline_metrics` (the score of a flat object, the floor to beat),
    :func:`calibration_metrics` (flat object and blurred truths on given pixels) and
    :func:`comparison_region` (their region arguments for a stitched object and its scan).
reconstruction
    Reading ``reconstruction.npz`` / ``.npy`` files.
report
    ``metrics.json`` (strict JSON, atomic), the text table, and :func:`evaluate_and_report`
    (stitched object + scan -> metrics.json + comparison.png) used by train/infer.
plots
    ``comparison.png`` (matplotlib imported only when drawing).

Nothing here imports torch or tensorflow.
"""

from ptycho.evaluation.compare import (
    CALIBRATION_BLURS_PX,
    EvaluationResult,
    calibration_metrics,
    compare_reconstruction,
    comparison_region,
    evaluate_reconstruction,
    flat_baseline_metrics,
)
from ptycho.evaluation.frc import FRCCurve, frc_curve, half_bit_threshold
from ptycho.evaluation.metrics import data_range, mae, psnr, ssim
from ptycho.evaluation.plots import comparison_figure
from ptycho.evaluation.reconstruction import Reconstruction, read_reconstruction
from ptycho.evaluation.report import (
    evaluate_and_report,
    format_metrics,
    format_metrics_table,
    metrics_to_json,
    write_metrics_json,
    write_report,
)

__all__ = [
    "CALIBRATION_BLURS_PX",
    "EvaluationResult",
    "FRCCurve",
    "Reconstruction",
    "calibration_metrics",
    "compare_reconstruction",
    "comparison_figure",
    "comparison_region",
    "data_range",
    "evaluate_and_report",
    "evaluate_reconstruction",
    "flat_baseline_metrics",
    "format_metrics",
    "format_metrics_table",
    "frc_curve",
    "half_bit_threshold",
    "mae",
    "metrics_to_json",
    "psnr",
    "read_reconstruction",
    "ssim",
    "write_metrics_json",
    "write_report",
]
