"""Command-line flags generated from the configuration dataclasses (one per field)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

from ptycho.cli.common import add_option
from ptycho.config.config import ExecutionConfig, InferenceConfig, ModelConfig, TrainingConfig

HELP = {
    "N": "pattern size in pixels (64, 128, 256); default: from the data",
    "gridsize": "positions per group along each axis (C = gridsize**2 patches per sample)",
    "n_filters_scale": "multiplier of the convolution filter ladder (ffno: width 32 x this)",
    "model_type": "pinn (physics-informed, no ground truth) or supervised (needs objectGuess)",
    "architecture": "generator network: cnn (encoder and two decoders), unet (the cnn with "
                    "skip connections from each encoder level into both decoders), resnet "
                    "(the cnn with a residual block at each level) or ffno (a factorised "
                    "Fourier neural operator: every output pixel sees the whole pattern)",
    "amp_activation": "amplitude head activation",
    "object_big": "merge each group's patches on one canvas (overlap constraint)",
    "probe_big": "also predict the border outside the central N/2 box",
    "probe_mask": "multiply the illuminated field by a disk of radius N/4",
    "pad_object": "predict only the central N/2 box, zero-padded to N",
    "probe_scale": "probe normalisation divisor",
    "gaussian_smoothing_sigma": "smoothing of the illuminated field in pixels (0: off)",
    "probe_modes": "M incoherent probe modes of the forward model, I = sum_k |F(P_k O)|^2 "
                   "(1-16); the data's probe modes start them, missing ones are made from "
                   "mode 0 (5 %% of the power each), all orthogonalised; they train with "
                   "--probe_trainable (see docs/probe-modes.md)",
    "train_data_file": "training scan(s) (.npz or .h5); several (A.npz B.npz ..., or the flag "
                       "repeated) train one model on a library of scans with the same N: each "
                       "is grouped, normalised and photon-counted on its own and meets its own "
                       "probe in the physics; the archive keeps the first scan's probe and "
                       "lists every scan, and inference uses the new scan's own probe and "
                       "normalisation",
    "targets": "refine or refine:K: reconstruct the training scan with K iterations of the "
               "iterative solver and also train against it, with weight --realspace_mae_weight "
               "(when 0: 10 per mean count per detector pixel); with --probe_trainable or "
               "--probe-modes M > 1 the solver also refines the probe and training uses it",
    "test_data_file": "scan to reconstruct after training (.npz, .h5 or .cxi)",
    "batch_size": "samples per optimiser step",
    "nll_weight": "weight of the Poisson NLL of the counts (the default data term)",
    "mae_weight": "weight of the mean absolute error of the far-field amplitudes (sqrt counts); "
                  "--mae_weight 1 --nll_weight 0 trained better than the NLL on most measures "
                  "on natural-image scans (benchmarks/results/network-diagnosis-*.md)",
    "nepochs": "maximum number of epochs",
    "nphotons": "photons per pattern for the Poisson model (default: measured from the data)",
    "n_groups": "number of training groups (default: one per scan position)",
    "n_images": "deprecated alias of --n_groups",
    "neighbor_count": "K: group members are drawn from each anchor's K nearest neighbours",
    "probe_trainable": "refine the probe during training",
    "intensity_scale_trainable": "refine the intensity scale during training",
    "learning_rate": "Adam learning rate (the peak rate with --lr_schedule cosine)",
    "plateau_factor": "plateau schedule: multiply the learning rate by this on a plateau",
    "plateau_patience": "plateau schedule: epochs without improvement before reducing",
    "plateau_min_lr": "plateau schedule: lowest learning rate",
    "lr_schedule": "plateau (reduce on a plateau of the monitored loss) or cosine (per step: "
                   "linear warm-up, then cosine decay to --lr_min at the last epoch)",
    "lr_warmup_epochs": "cosine schedule: epochs of linear warm-up (fractional allowed; 0: none)",
    "lr_min": "cosine schedule: final learning rate",
    "grad_clip_norm": "clip the global L2 norm of all gradients to this before each step "
                      "(0 or unset: off)",
    "validation_fraction": "fraction of groups held out for validation",
    "early_stop_patience": "epochs without improvement before stopping",
    "seed": "random seed (grouping, split, initialisation)",
    "measurement": "what diff3d holds: auto, amplitude or intensity (counts)",
    "output_dir": "output folder",
    "backend": "pytorch (default) or tensorflow",
    "init_weights": "start from the generator weights of this model archive (either backend)",
    "accelerator": "auto, cpu, gpu, cuda or mps",
    "devices": "devices per node (integer or 'auto')",
    "strategy": "Lightning strategy, e.g. auto or ddp",
    "num_nodes": "number of nodes",
    "precision": "32-true (default), bf16-mixed, 16-mixed",
    "num_workers": "data loader worker processes",
    "logger": "csv (default), tensorboard, mlflow or none",
    "inference_batch_size": "samples per predict batch",
}

_SKIP = {"model", "progress_bar"}


def _list_item(hint: Any):
    """The item type of a field that also accepts a list (``Path | list[Path] | None``), else None."""
    for arg in typing.get_args(hint):
        if typing.get_origin(arg) is list:
            return typing.get_args(arg)[0]
    return None


def _parser_type(hint: Any):
    """Map a dataclass field type to (argparse type, choices)."""
    if _list_item(hint) is not None:
        return _parser_type(_list_item(hint))
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _parser_type(args[0])
        return str, None  # e.g. Union[int, str] (devices): parsed later
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        return type(choices[0]), list(choices)
    if hint in (int, float, str, bool):
        return hint, None
    if hint is Path:
        return Path, None
    return str, None


def add_dataclass_flags(parser: argparse.ArgumentParser, *classes, skip: set[str] = frozenset()) -> list[str]:
    """Add one flag per field of ``classes`` (defaults None so a config file can fill them)."""
    names: list[str] = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in _SKIP or f.name in skip or f.name in names:
                continue
            arg_type, choices = _parser_type(hints[f.name])
            default = f.default if f.default is not dataclasses.MISSING else None
            help_text = HELP.get(f.name, f.name.replace("_", " "))
            if default is not None and not isinstance(default, Path):
                help_text += f" (default: {default})"
            elif isinstance(default, Path):
                help_text += f" (default: {default})"
            kwargs = {"type": arg_type, "help": help_text}
            if choices:
                kwargs["choices"] = choices
            if _list_item(hints[f.name]) is not None:  # one or more values, flag repeatable
                kwargs.update(nargs="+", action="extend", metavar="FILE")
            add_option(parser, f.name, **kwargs)
            names.append(f.name)
    return names


def training_flag_names() -> list[str]:
    return [f.name for cls in (ModelConfig, TrainingConfig) for f in dataclasses.fields(cls)
            if f.name not in _SKIP]


def execution_flag_names() -> list[str]:
    return [f.name for f in dataclasses.fields(ExecutionConfig) if f.name not in _SKIP]


def inference_flag_names() -> list[str]:
    return [f.name for f in dataclasses.fields(InferenceConfig) if f.name not in _SKIP]


def collect(args: argparse.Namespace, names: list[str]) -> dict:
    """``{name: value}`` of the flags actually given (None = not given)."""
    return {name: getattr(args, name, None) for name in names}
