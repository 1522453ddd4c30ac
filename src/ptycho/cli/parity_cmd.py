"""``ptychopinn parity``: train, save, load and infer with both backends and compare them.

Light module: argument definitions only; the harness (``ptycho.parity.harness``) loads in ``run``.
"""

from __future__ import annotations

import argparse

from ptycho.cli.common import add_option

_DESCRIPTION = """\
End-to-end backend parity: for TensorFlow (the baseline) and PyTorch, run
'python -m ptycho.cli.main train' and then 'infer' in separate subprocesses with identical
settings and seeds (and, by default, the same initial weights), tee each complete log to
REPORTS/<UTC timestamp>/tf_baseline.log and torch_run.log, compute the component/model parity
table in this process, and write parity_summary.md and parity.json there (environment, exit
status, wall times, final losses, quality metrics against the ground truth, parity table,
artifacts, residual risks). Earlier report folders are never overwritten.

Exit status: 0 when every check passed; 1 when a backend failed or could not run (unless
--allow-missing-backend), a parity check exceeded its tolerance, or the amplitude or phase
PSNR of the two backends differ by more than --max-psnr-diff-db; 2 for bad arguments."""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "parity", help="compare the PyTorch and TensorFlow backends end to end",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_option(parser, "data", type=str, required=True, metavar="SCAN",
               help="training scan (.npz or .h5); with objectGuess for quality metrics")
    add_option(parser, "test-data", type=str, metavar="SCAN",
               help="scan to reconstruct (default: --data)")
    add_option(parser, "out", type=str, required=True, metavar="REPORTS",
               help="folder for the timestamped report folders")
    add_option(parser, "nepochs", type=int, default=10, help="epochs per backend (default: 10)")
    add_option(parser, "batch-size", type=int, help="training batch size (default: train's)")
    add_option(parser, "gridsize", type=int, help="gridsize (default: train's)")
    add_option(parser, "n-filters-scale", type=int, help="filter ladder scale (default: train's)")
    add_option(parser, "n-groups", type=int, help="training groups (default: every position)")
    add_option(parser, "seed", type=int, default=42, help="seed of both runs (default: 42)")
    add_option(parser, "config", type=str, metavar="YAML",
               help="YAML configuration passed to both train runs")
    add_option(parser, "accelerator", type=str, help="accelerator of both runs (default: auto)")
    add_option(parser, "same-init", type=bool, default=True,
               help="start both backends from the same seeded initial weights (default: true)")
    add_option(parser, "checks", type=str, default="standard",
               choices=["full", "standard", "quick", "none"],
               help="parity-table level: full (16 model configurations per architecture, "
                    "both optimiser rules), standard (default), quick, none")
    add_option(parser, "max-psnr-diff-db", type=float, default=1.0, metavar="DB",
               help="largest accepted PSNR difference between the backends (default: 1)")
    add_option(parser, "allow-missing-backend", type=bool, default=False,
               help="succeed when a backend is not installed (it is still reported)")
    add_option(parser, "timeout", type=float, metavar="SECONDS",
               help="kill a train or infer subprocess after this long")
    add_option(parser, "threads", type=int, metavar="N",
               help="CPU threads of both frameworks in the subprocesses (OMP_NUM_THREADS, "
                    "TF_NUM_INTRAOP_THREADS, ...; default: the libraries' own choice)")
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ptycho.parity.harness import HarnessSettings, run_harness

    settings = HarnessSettings(
        data=Path(args.data), out=Path(args.out),
        test_data=Path(args.test_data) if args.test_data else None,
        nepochs=args.nepochs, batch_size=args.batch_size, gridsize=args.gridsize,
        n_filters_scale=args.n_filters_scale, n_groups=args.n_groups, seed=args.seed,
        config=Path(args.config) if args.config else None, accelerator=args.accelerator,
        same_init=args.same_init, checks=args.checks, max_psnr_diff_db=args.max_psnr_diff_db,
        allow_missing_backend=args.allow_missing_backend, timeout_s=args.timeout,
        threads=args.threads, echo=not args.quiet)
    result = run_harness(settings)
    verdict = result.report["verdict"]
    print(f"parity report: {result.report_dir / 'parity_summary.md'} "
          f"({'PASSED' if verdict['passed'] else 'FAILED'})")
    for failure in verdict["failures"]:
        print(f"  failure: {failure}")
    return result.exit_status
