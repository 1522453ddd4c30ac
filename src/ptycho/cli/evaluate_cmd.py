"""``ptychopinn evaluate RECON --truth SCAN [--output_dir DIR]``: metrics against the truth.

RECON is a ``reconstruction.npz`` (keys ``object``, ``x0_px``, ``y0_px``, optional ``weight``,
``xcoords``, ``ycoords``; see :mod:`ptycho.evaluation.reconstruction`) or a complex ``.npy``
object whose pixel (0, 0) is truth pixel (0, 0) unless ``--x0``/``--y0`` say otherwise. The
truth is the ``objectGuess`` of a scan file (NPZ or HDF5). The compared region is the bounding
box of the reconstruction's positions (else the scan's), intersected with the covered pixels
(``weight > 0``). Writes ``metrics.json`` and ``comparison.png`` to the output folder (default:
RECON's folder) and prints the metrics.

Only argparse is imported at module import; the evaluation stack is imported in :func:`run`.
"""

from __future__ import annotations

import argparse

from ptycho.cli.common import add_option
from ptycho.cli.reading import add_reading_options, read_scan_with_options

REGISTRATION_CHOICES = ("auto", "amplitude", "complex", "none")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compare a reconstruction with the scan's ground-truth object",
        description=(
            "Register a reconstruction to the ground truth (objectGuess of a scan NPZ or HDF5), "
            "remove the global phase offset and amplitude scale (and with --remove-phase-ramp the "
            "linear phase ramp), and report PSNR, SSIM, MAE and FRC resolution for amplitude and "
            "phase. Writes metrics.json and comparison.png."),
    )
    parser.add_argument("recon", metavar="RECON",
                        help="reconstruction.npz (object, x0_px, y0_px[, weight, xcoords, "
                             "ycoords]) or a complex (H, W) .npy")
    add_option(parser, "truth", required=True, metavar="SCAN",
               help="scan (.npz, .h5, .cxi) whose objectGuess is the ground truth")
    add_option(parser, "output_dir", metavar="DIR",
               help="folder for metrics.json and comparison.png (default: RECON's folder)")
    add_option(parser, "x0", type=float, metavar="PX",
               help="truth column of RECON's pixel (0, 0); overrides x0_px "
                    "(default: the file's x0_px, 0 for .npy)")
    add_option(parser, "y0", type=float, metavar="PX",
               help="truth row of RECON's pixel (0, 0); overrides y0_px "
                    "(default: the file's y0_px, 0 for .npy)")
    add_option(parser, "registration", choices=REGISTRATION_CHOICES, default="auto",
               help="sub-pixel registration on the amplitude, the complex field, or none; auto: "
                    "amplitude unless it has no contrast (default: %(default)s)")
    add_option(parser, "remove-phase-ramp", type=bool, default=False,
               help="also remove the linear phase ramp of the reconstruction relative to the "
                    "truth (least squares on the compared pixels after registration; free "
                    "between object and a refined probe); the ramp is written to metrics.json "
                    "as phase_ramp_rad_per_px (default: false)")
    add_option(parser, "plot", type=bool, default=True,
               help="write comparison.png (default: true)")
    add_reading_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Evaluate ``args.recon`` against ``args.truth``; return the exit status (0)."""
    from pathlib import Path

    import numpy as np

    from ptycho.errors import InputError
    from ptycho.evaluation import (
        compare_reconstruction,
        format_metrics_table,
        read_reconstruction,
        write_report,
    )

    recon = read_reconstruction(args.recon, x0_px=args.x0, y0_px=args.y0)
    truth_path = Path(args.truth)
    scan = read_scan_with_options(truth_path, args)
    if scan.object_guess is None:
        raise InputError("missing key", f"{truth_path.name}:objectGuess",
                         "a scan holding the ground-truth object objectGuess (H, W)",
                         "no objectGuess")
    scan_xy = recon.scan_xy
    if scan_xy is None:
        scan_xy = np.stack([scan.xcoords, scan.ycoords], axis=1)
    result = compare_reconstruction(recon.object, recon.x0_px, recon.y0_px, scan.object_guess,
                                    scan_xy=scan_xy, valid=recon.valid,
                                    registration=args.registration or "auto",
                                    remove_phase_ramp=bool(args.remove_phase_ramp))

    output_dir = Path(args.output_dir) if args.output_dir else Path(args.recon).resolve().parent
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError("cannot create folder", "--output_dir", "a writable folder for the results",
                         f"{output_dir}: {exc.strerror or type(exc).__name__}") from None
    title = (f"{Path(args.recon).name} vs {truth_path.name}:objectGuess, registration shift "
             f"[dy, dx] = [{result.displacement_px[0]:.2f}, {result.displacement_px[1]:.2f}] px")
    written = write_report(result, output_dir, plot=args.plot is not False, title=title)
    print(format_metrics_table(result.metrics))
    print("wrote " + ", ".join(str(path) for path in written))
    return 0
