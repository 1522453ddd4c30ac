"""``ptychopinn train``: train a model on a scan and write ``<output_dir>/wts.h5.zip``."""

from __future__ import annotations

import argparse

from ptycho.cli.common import add_option, ensure_output_dir
from ptycho.cli.config_flags import (
    add_dataclass_flags,
    collect,
    execution_flag_names,
    training_flag_names,
)
from ptycho.cli.reading import add_reading_options, read_options
from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train a model on one or more scans",
        description="Train a physics-informed network on a scan (or a library of scans: "
                    "--train_data_file A.npz B.npz ...) and write <output_dir>/wts.h5.zip, "
                    "history.csv and loss_curve.png; with --test_data_file also reconstruct it. "
                    "Flags override values from --config, which override the defaults.")
    add_option(parser, "config", type=str, metavar="YAML", help="YAML configuration file")
    add_option(parser, "resume", type=str, metavar="OUTPUT_DIR",
               help="continue the interrupted run in OUTPUT_DIR (its saved configuration, "
                    "optimiser and schedule) up to --nepochs epochs in total")
    add_dataclass_flags(parser, TrainingConfig, ModelConfig)
    group = parser.add_argument_group("execution")
    add_dataclass_flags(group, ExecutionConfig)
    add_reading_options(parser)
    return parser


def configs_from_args(args: argparse.Namespace):
    """Build ``(TrainingConfig, ExecutionConfig)``: explicit flag > ``--config`` file > default."""
    from ptycho.config.files import build_execution_config, build_training_config, load_config_file

    file_values = load_config_file(args.config) if args.config else None
    flags = collect(args, training_flag_names())
    config = build_training_config(flags, file_values)
    if flags.get("N") is None and "N" not in (file_values or {}):
        config.model.N = 0  # "default: from the data" (fixed when the scan is read)
    execution = build_execution_config(collect(args, execution_flag_names()), file_values)
    execution.progress_bar = execution.progress_bar and not args.quiet
    return config, execution


def resume_configs_from_args(args: argparse.Namespace):
    """``(TrainingConfig, ExecutionConfig, Checkpoint)`` for ``--resume OUTPUT_DIR``: the saved
    configuration; flags (and ``--config``) may change ``--nepochs``, ``--test_data_file`` and
    the execution settings, and must otherwise repeat the saved values."""
    from ptycho.config.files import build_execution_config, load_config_file
    from ptycho.workflows.resume import read_checkpoint, resume_training_config

    file_values = load_config_file(args.config) if args.config else None
    checkpoint = read_checkpoint(args.resume)
    config = resume_training_config(checkpoint, args.resume, collect(args, training_flag_names()),
                                    file_values)
    execution = build_execution_config(collect(args, execution_flag_names()), file_values)
    execution.progress_bar = execution.progress_bar and not args.quiet
    return config, execution, checkpoint


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ptycho.config.config import training_files
    from ptycho.data.io import read_scan
    from ptycho.workflows import inference, training

    checkpoint = None
    if getattr(args, "resume", None):
        config, execution, checkpoint = resume_configs_from_args(args)
    else:
        config, execution = configs_from_args(args)
    output_dir = Path(config.output_dir)
    ensure_output_dir(output_dir, "--output_dir")
    reading = read_options(args)  # applied to the training and the test scans
    train_scans = [read_scan(path, config.measurement, options=reading)
                   for path in training_files(config)]
    test_scan = None
    if config.test_data_file is not None:
        test_scan = read_scan(config.test_data_file, config.measurement, options=reading)
    result = training.train(config, execution, resume=checkpoint, train_scan=train_scans or None)
    if not result.is_global_zero:  # a non-zero DDP rank: rank 0 writes and reports
        return 0
    print(f"model written to {result.archive_path}")
    summary = result.history
    if summary.get("train_loss"):
        print(f"epochs: {len(summary['train_loss'])}, final training loss "
              f"{summary['train_loss'][-1]:.6g}, best epoch {summary.get('best_epoch')}")
    if test_scan is not None:
        probe = inference.stitching_probe(result.model, test_scan, len(result.scans))
        recon = inference.reconstruct(result.model, test_scan,
                                      batch_size=execution.inference_batch_size,
                                      neighbor_count=config.neighbor_count, probe=probe)
        metrics = inference.write_outputs(recon, output_dir, test_scan)
        print(f"reconstruction of {config.test_data_file} written to {output_dir}")
        if metrics:
            from ptycho.evaluation import format_metrics

            print(format_metrics(metrics))
    return 0
