"""``ptychopinn convert``: convert a model archive to the other backend.

Light module: argument definitions only; the backends load inside ``run``.
"""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Convert a trained model archive between the PyTorch and TensorFlow backends: every weight is
transferred (convolution kernels and biases, the log intensity scale, the probe) and
OUT_DIR/wts.h5.zip is written with the other backend's payload and the same model and
training configuration, nphotons and history. The converted model is checked on a random
batch before the command returns. Needs both backends installed."""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert", help="convert a model archive to the other backend",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--to", required=True, choices=["pytorch", "tensorflow"],
                        help="backend of the converted model")
    parser.add_argument("model_dir", metavar="MODEL_DIR",
                        help="training output folder, wts.h5.zip, or an extracted archive folder")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for the converted wts.h5.zip")
    return parser


def run(args: argparse.Namespace) -> int:
    from ptycho.cli.common import ensure_output_dir
    from ptycho.errors import BackendUnavailableError, InputError
    from ptycho.parity.weights import convert_archive, prediction_difference

    ensure_output_dir(args.out_dir, "OUT_DIR")
    try:
        path, source, converted = convert_archive(args.model_dir, args.out_dir, args.to)
    except BackendUnavailableError as exc:
        raise InputError("backend not installed", "ptychopinn convert",
                         "both backends installed (conversion reads one and builds the other)",
                         str(exc)) from None
    max_abs, max_rel = prediction_difference(source, converted)
    print(f"converted the {source.backend} model {args.model_dir} to {converted.backend}: {path}")
    print(f"check on a random batch: max |difference| of predicted object patches "
          f"{max_abs:.3g} (relative {max_rel:.3g})")
    return 0
