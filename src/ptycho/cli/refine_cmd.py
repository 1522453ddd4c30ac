"""``ptychopinn refine``: iterative reconstruction of a scan, from a flat object or a reconstruction.

Light module: argument definitions only. The defaults of the solver flags are those of
:class:`ptycho.refine.RefineOptions` (read when a command runs or ``--help`` is shown, so that
building the parser imports no NumPy).
"""

from __future__ import annotations

import argparse

from ptycho.cli.common import add_option, ensure_output_dir
from ptycho.cli.reading import add_reading_options, read_scan_with_options

#: RefineOptions field -> flag of ``ptychopinn refine`` (error messages name the flag).
REFINE_FLAGS = {
    "iterations": "--iterations",
    "batch_size": "--batch-size",
    "noise_model": "--noise-model",
    "refine_probe": "--refine-probe",
    "refine_positions": "--refine-positions",
    "probe_start_iteration": "--probe-start-iteration",
    "position_start_iteration": "--position-start-iteration",
    "position_affine": "--position-affine",
    "probe_modes": "--probe-modes",
    "seed": "--seed",
    "device": "--device",
}

_DESCRIPTION = """\
Reconstruct a scan with the iterative solver (minibatch gradient steps on the physics forward
model), starting from a flat object or from a reconstruction (reconstruction.npz of infer or
refine), optionally also refining the probe and the scan positions. Writes reconstruction.npz
(with probe and starting positions), reconstructed_amplitude.png, reconstructed_phase.png,
refine_history.csv, misfit.png and, when the scan has objectGuess, metrics.json and
comparison.png. One progress line per iteration is logged."""


def refine_defaults() -> dict:
    """``RefineOptions()`` as a dict (imports ``ptycho.refine``, hence NumPy)."""
    from ptycho.refine import RefineOptions

    return RefineOptions().as_dict()


class _DefaultsFromRefineOptions(argparse.HelpFormatter):
    """Fills ``%(default)s`` of the solver flags from RefineOptions when help is shown."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        field = getattr(action, "dest", None)  # the dest of a ptychopinn refine flag is its field
        if action.default is None and field in REFINE_FLAGS and "%(default)s" in text:
            text = text.replace("%(default)s", str(refine_defaults()[field]))
        return text


def add_solver_options(parser, flags: dict[str, str], help_prefix: str = "") -> None:
    """The solver flags of ``flags`` (field -> flag), each defaulting to None (= RefineOptions)."""
    specs = {
        "iterations": dict(type=int, metavar="K",
                           help="passes over all scan positions (default: %(default)s)"),
        "batch_size": dict(type=int, metavar="B",
                           help="positions per update; smaller converges in fewer iterations, "
                                "larger runs faster per iteration (default: %(default)s)"),
        "noise_model": dict(type=str, choices=["gaussian", "poisson"],
                            help="gaussian: least squares on amplitudes (robust); poisson: the "
                                 "Poisson likelihood of the counts (default: %(default)s)"),
        "refine_probe": dict(type=bool, help="also refine the probe (default: %(default)s)"),
        "refine_positions": dict(type=bool, help="also refine the scan positions (sub-pixel) "
                                                 "(default: %(default)s)"),
        "probe_start_iteration": dict(type=int, metavar="K",
                                      help="first iteration (0-based) with probe updates "
                                           "(default: %(default)s)"),
        "position_start_iteration": dict(type=int, metavar="K",
                                         help="first iteration (0-based) with position updates "
                                              "(default: %(default)s)"),
        "position_affine": dict(type=bool,
                                help="with --refine-positions, also take a joint affine step "
                                     "(scale, rotation, shear) of all positions with the object "
                                     "each iteration; false: per-position steps only, which "
                                     "leave a scale error of the scan almost uncorrected "
                                     "(default: %(default)s)"),
        "probe_modes": dict(type=int, metavar="M",
                            help="incoherent probe modes: the scan's modes, missing ones made "
                                 "from mode 0, orthogonalised; all refined with --refine-probe "
                                 "(default: %(default)s)"),
        "seed": dict(type=int, metavar="S",
                     help="seed of the minibatch order (default: %(default)s)"),
        "device": dict(type=str, choices=["auto", "cpu", "cuda"],
                       help="auto: a CUDA GPU when torch sees one (default: %(default)s)"),
    }
    for field, flag in flags.items():
        spec = dict(specs[field])
        spec["help"] = help_prefix + spec["help"]
        add_option(parser, flag.removeprefix("--"), dest=_dest(flag), **spec)


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "refine", help="iterative reconstruction (from flat or from a reconstruction)",
        description=_DESCRIPTION, formatter_class=_DefaultsFromRefineOptions)
    add_option(parser, "scan", type=str, required=True, metavar="FILE",
               help="scan to reconstruct (.npz, .h5 or .cxi)")
    add_option(parser, "init", type=str, default="flat", metavar="flat|RECON.npz",
               help="starting object: flat (all ones) or a reconstruction.npz written by infer "
                    "or refine (default: flat)")
    add_option(parser, "output_dir", type=str, required=True, help="output folder")
    add_option(parser, "measurement", type=str, default="auto",
               choices=["auto", "amplitude", "intensity"], help="what diff3d holds (default: auto)")
    add_solver_options(parser, REFINE_FLAGS)
    add_reading_options(parser)
    return parser


def options_from_args(args: argparse.Namespace, flags: dict[str, str], **fixed):
    """``RefineOptions`` from the flags that were given (others keep their defaults), validated.

    ``fixed`` sets further fields. An invalid value raises InputError naming its flag.
    """
    from ptycho.errors import InputError
    from ptycho.refine import RefineOptions

    given = {field: getattr(args, _dest(flag)) for field, flag in flags.items()
             if getattr(args, _dest(flag), None) is not None}
    options = RefineOptions(**{**given, **fixed})
    try:
        options.validate()
    except InputError as exc:
        if exc.where in flags:
            raise InputError(exc.what, flags[exc.where], exc.expected, exc.actual) from None
        raise
    return options


def solve(scan, options, run_refine, logger):
    """Run ``run_refine(on_iteration=...)`` with a progress line per iteration (and
    per-iteration metrics when the scan has the ground truth); return its result."""
    from ptycho.workflows.refinement import IterationLog, truth_metrics_callback

    return run_refine(on_iteration=IterationLog(options.iterations, truth_metrics_callback(scan),
                                                logger))


def run(args: argparse.Namespace) -> int:
    import logging
    import time
    from pathlib import Path

    from ptycho.errors import InputError
    from ptycho.refine import refine, resolve_device
    from ptycho.workflows.refinement import initial_from_reconstruction, write_refine_outputs

    log = logging.getLogger("ptycho.refine")
    output_dir = Path(args.output_dir)
    ensure_output_dir(output_dir, "--output_dir")
    options = options_from_args(args, REFINE_FLAGS)
    resolve_device(options.device)
    scan = read_scan_with_options(args.scan, args)
    initial = None
    if args.init != "flat":
        from ptycho.evaluation import read_reconstruction

        initial = initial_from_reconstruction(read_reconstruction(args.init), scan)
    started = time.perf_counter()
    try:
        result = solve(scan, options, lambda **callbacks: refine(scan, initial, options,
                                                                 **callbacks), log)
    except InputError as exc:
        if exc.where == "initial object":
            raise InputError(exc.what, f"--init {Path(args.init).name}", exc.expected,
                             exc.actual) from None
        raise
    seconds = time.perf_counter() - started
    metrics = write_refine_outputs(result, output_dir, scan)
    start = "flat" if initial is None else Path(args.init).name
    print(f"refined {scan.n_positions} positions from {start}: {options.iterations} iterations "
          f"in {seconds:.1f} s (misfit {result.history['misfit'][-1]:.6g}); outputs in "
          f"{output_dir}")
    if metrics:
        from ptycho.evaluation import format_metrics

        print(format_metrics(metrics))
    return 0
