"""Entry point of the ``ptychopinn`` command and the ``ptycho_train`` / ``ptycho_inference`` aliases.

Each subcommand lives in ``ptycho.cli.<name>_cmd`` with two functions: ``register(subparsers)``
(argument definitions only, no heavy imports) and ``run(args) -> int``.

Exit status: 0 success; 2 bad input or usage (one line ``error: ...``); 1 internal error
(traceback only with ``--debug``); 3 training diverged (NaN/Inf loss; the best weights so far
are kept); 130/143 interrupted by SIGINT/SIGTERM (``train --resume`` continues).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

COMMANDS = ("simulate", "inspect", "evaluate", "train", "infer", "refine", "convert", "parity")


class _Parser(argparse.ArgumentParser):
    """argparse parser whose usage errors follow the package's one-line error format."""

    def error(self, message: str) -> None:  # pragma: no cover - exercised through main()
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``ptychopinn`` parser (imports only the light ``*_cmd`` modules)."""
    from ptycho import __version__

    parser = _Parser(
        prog="ptychopinn",
        description="Reconstruct far-field ptychography scans with a physics-informed neural network.",
    )
    parser.add_argument("--version", action="version", version=f"ptychopinn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"ptycho.cli.{name}_cmd")
        sub = module.register(subparsers)
        sub.set_defaults(_run=module.run)
        sub.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
        sub.add_argument("--quiet", action="store_true", help="only warnings and errors; no progress bars")
    return parser


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric", "tensorflow", "absl",
                  "matplotlib", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ptychopinn`` command; return the exit status."""
    from ptycho.errors import (
        BackendUnavailableError,
        InputError,
        TrainingDiverged,
        TrainingInterrupted,
    )

    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.debug, args.quiet)
    try:
        return int(args._run(args) or 0)
    except (InputError, BackendUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.debug:
            raise
        return 2
    except TrainingInterrupted as exc:  # (a non-zero DDP rank exits with rank 0's status, quietly)
        if exc.is_global_zero:
            print(f"interrupted: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except TrainingDiverged as exc:
        if exc.is_global_zero:
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `ptychopinn inspect ... | head`: the reader went away
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


def _alias(command: str) -> int:
    return main([command, *sys.argv[1:]])


def train_alias() -> int:
    """``ptycho_train``: the upstream spelling of ``ptychopinn train``."""
    return _alias("train")


def inference_alias() -> int:
    """``ptycho_inference``: the upstream spelling of ``ptychopinn infer``."""
    return _alias("infer")


if __name__ == "__main__":
    sys.exit(main())
