"""``ptychopinn infer``: reconstruct a scan with a trained model."""

from __future__ import annotations

import argparse

from ptycho.cli.common import add_option, ensure_output_dir
from ptycho.cli.reading import add_reading_options, read_options
from ptycho.config.config import DEFAULT_PREDICT_BATCH

ADAPTED_DIR = "adapted_model"  # inside --output_dir: the archive of --adapt-epochs


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "infer", help="reconstruct a scan with a trained model",
        description="Load a model archive, reconstruct every scan position, stitch, and write "
                    "reconstruction.npz, reconstructed_amplitude.png, reconstructed_phase.png and, "
                    "when the scan has objectGuess, metrics.json and comparison.png.")
    add_option(parser, "model_path", type=str, required=True,
               help="training output folder, wts.h5.zip, or an extracted archive folder")
    add_option(parser, "test_data", "--test_data_file", "--test-data-file", type=str, required=True,
               help="scan to reconstruct (.npz, .h5 or .cxi)")
    add_option(parser, "output_dir", type=str, default="inference_outputs",
               help="output folder (default: inference_outputs)")
    add_option(parser, "batch_size", type=int, default=DEFAULT_PREDICT_BATCH,
               help=f"samples per predict batch (default: {DEFAULT_PREDICT_BATCH}; larger batches suit GPUs)")
    add_option(parser, "neighbor_count", type=int, default=4,
               help="K for grouping when gridsize > 1 (default: 4)")
    add_option(parser, "crop_px", type=int,
               help="central crop M of each patch used for stitching (default: N/2 with "
                    "--stitch-weight probe, 20 with crop)")
    add_option(parser, "stitch_weight", type=str, default="probe", choices=["probe", "crop"],
               help="probe: weight each crop pixel by the probe intensity |P|^2 (the "
                    "model's probe; the scan's own for a model trained on several scans; "
                    "less scan-step texture after short trainings); crop: average the crops "
                    "uniformly, as the ptychodus path does (default: probe)")
    add_option(parser, "measurement", type=str, default="auto",
               choices=["auto", "amplitude", "intensity"], help="what diff3d holds (default: auto)")
    add_option(parser, "backend", type=str, choices=["pytorch", "tensorflow"],
               help="expected backend of the archive (default: the archive's own)")
    add_reading_options(parser)
    add_option(parser, "n_groups", "--n_images", "--n-images", type=int,
               help="ignored: inference always covers every scan position")
    adaptation = parser.add_argument_group(
        "test-time adaptation", "fine-tune the model on the scan's own patterns with the "
        "physics loss (no ground truth needed) before reconstructing; the adapted model is "
        "written to OUTPUT_DIR/adapted_model/ (ptycho.workflows.adaptation)")
    add_option(adaptation, "adapt-epochs", type=int, default=0, metavar="K",
               help="training epochs on the scan before predicting (default: 0, no "
                    "adaptation)")
    add_option(adaptation, "adapt-learning-rate", type=float, metavar="LR",
               help="learning rate of the adaptation (default: the model's training rate)")
    refinement = parser.add_argument_group(
        "iterative refinement", "polish the network reconstruction with the iterative solver "
        "(as ptychopinn refine --init) and write the result into OUTPUT_DIR/refined/")
    add_option(refinement, "refine-iterations", type=int, default=0, metavar="K",
               help="solver iterations after the network (default: 0, no refinement)")
    add_option(refinement, "refine-probe", type=bool,
               help="also refine the probe")
    add_option(refinement, "refine-positions", type=bool,
               help="also refine the scan positions (sub-pixel)")
    add_option(refinement, "position-affine", type=bool,
               help="with --refine-positions, also a joint affine step of all positions with "
                    "the object (default: true; see refine --help)")
    product = parser.add_argument_group("ptychodus product output")
    add_option(product, "product_out", type=str, metavar="FILE",
               help="also write the reconstruction as a ptychodus product (.h5, .hdf5 or .npz)")
    add_option(product, "product_in", type=str, metavar="FILE",
               help="the scan's ptychodus product: metadata, positions, probe and pixel geometry "
                    "are taken from it")
    add_option(product, "pixel_size_m", type=float, help="object pixel size in metres "
               "(without --product-in)")
    add_option(product, "photon_energy_ev", type=float, help="photon energy in eV "
               "(without --product-in)")
    add_option(product, "detector_distance_m", type=float, help="object-detector distance in "
               "metres (without --product-in)")
    return parser


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from ptycho.archive import load_trained_model, training_scan_count
    from ptycho.data.io import read_scan
    from ptycho.errors import InputError
    from ptycho.workflows import inference

    log = logging.getLogger("ptycho.infer")
    output_dir = Path(args.output_dir)
    ensure_output_dir(output_dir, "--output_dir")
    if args.batch_size < 1:
        raise InputError("invalid value", "--batch_size", "an integer >= 1", str(args.batch_size))
    _check_adapt_options(args)
    refine_options = _refine_options(args)
    reading = read_options(args)
    reference = None
    if args.product_out:
        from ptycho.data.products import read_product
        from ptycho.workflows.product_export import require_geometry

        if args.product_in:
            reference = read_product(args.product_in)
        else:
            require_geometry(args.pixel_size_m, args.photon_energy_ev, args.detector_distance_m)
    if args.n_groups is not None:
        log.warning("--n_groups/--n_images is ignored: inference covers every scan position")
    scan = read_scan(args.test_data, args.measurement, options=reading)
    model, archive = load_trained_model(args.model_path, backend=args.backend)
    training_scans = training_scan_count(archive.manifest)
    if args.adapt_epochs:  # the adapted model is trained on this scan alone
        model, training_scans = _adapt(archive, scan, args, output_dir / ADAPTED_DIR), 1
    probe = inference.stitching_probe(model, scan, training_scans)
    result = inference.reconstruct(model, scan, batch_size=args.batch_size,
                                   neighbor_count=args.neighbor_count, crop_px=args.crop_px,
                                   stitch_weight=args.stitch_weight, probe=probe)
    metrics = inference.write_outputs(result, output_dir, scan)
    if args.product_out:
        from ptycho.data.products import write_product
        from ptycho.workflows.product_export import reconstruction_product

        product = reconstruction_product(result.stitched, scan, reference=reference,
                                         pixel_size_m=args.pixel_size_m,
                                         photon_energy_eV=args.photon_energy_ev,
                                         detector_distance_m=args.detector_distance_m)
        write_product(args.product_out, product)
        print(f"ptychodus product written to {args.product_out}")
    adapted = " (adapted)" if args.adapt_epochs else ""
    print(f"reconstructed {scan.n_positions} positions with the {archive.manifest['backend']} model "
          f"from {archive.source}{adapted}; outputs in {output_dir}")
    refined_metrics = None
    if refine_options is not None:
        refined_metrics = _refine(result, scan, probe, refine_options,
                                  output_dir / "refined", log)
    if metrics:
        from ptycho.evaluation import format_metrics

        if refined_metrics is None:
            print(format_metrics(metrics))
        else:
            print("network:\n" + format_metrics(metrics))
            print("refined:\n" + format_metrics(refined_metrics))
    return 0


def _check_adapt_options(args: argparse.Namespace) -> None:
    """Refuse bad --adapt-* values before any file is read."""
    import math

    from ptycho.errors import InputError

    if args.adapt_epochs < 0:
        raise InputError("invalid value", "--adapt-epochs", "an integer >= 0 (0: no "
                         "adaptation)", str(args.adapt_epochs))
    rate = args.adapt_learning_rate
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise InputError("invalid value", "--adapt-learning-rate", "a number > 0", str(rate))


def _adapt(archive, scan, args: argparse.Namespace, output_dir):
    """Adapt the archive's model to ``scan`` (``--adapt-epochs``); return the adapted model."""
    from ptycho.config.config import ExecutionConfig
    from ptycho.workflows.adaptation import adapt

    execution = ExecutionConfig(logger="none", progress_bar=not args.quiet)
    adapted = adapt(archive, scan, args.adapt_epochs, output_dir=output_dir,
                    execution=execution, learning_rate=args.adapt_learning_rate)
    epochs = f"{args.adapt_epochs} epoch{'s' if args.adapt_epochs != 1 else ''}"
    print(f"adapted the model on {scan.n_positions} positions: {epochs} in "
          f"{adapted.seconds:.1f} s; archive: {adapted.archive_path}")
    return adapted.model


def _refine_options(args: argparse.Namespace):
    """The RefineOptions of --refine-iterations (None when 0), validated before any work."""
    from ptycho.cli.refine_cmd import options_from_args
    from ptycho.errors import InputError

    if args.refine_iterations == 0:
        return None
    if args.refine_iterations < 0:
        raise InputError("invalid value", "--refine-iterations", "an integer >= 0 (0: no "
                         "refinement)", str(args.refine_iterations))
    return options_from_args(args, {"iterations": "--refine-iterations",
                                    "refine_probe": "--refine-probe",
                                    "refine_positions": "--refine-positions",
                                    "position_affine": "--position-affine"})


def _refine(result, scan, probe, options, output_dir, log) -> dict:
    """Refine the network result from ``probe`` (``inference.stitching_probe``: the model's,
    or the scan's own for a model trained on several scans), write ``output_dir``
    (``refine``'s files); return the metrics."""
    import time

    from ptycho.cli.refine_cmd import solve
    from ptycho.workflows.inference import refine_reconstruction
    from ptycho.workflows.refinement import write_refine_outputs

    started = time.perf_counter()
    refined = solve(scan, options, lambda **callbacks: refine_reconstruction(
        result, scan, options, probe=probe, **callbacks), log)
    seconds = time.perf_counter() - started
    metrics = write_refine_outputs(refined, output_dir, scan)
    print(f"refined the network reconstruction: {options.iterations} iterations in "
          f"{seconds:.1f} s (misfit {refined.history['misfit'][-1]:.6g}); outputs in "
          f"{output_dir}")
    return metrics
