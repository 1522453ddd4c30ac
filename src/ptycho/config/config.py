"""Configuration dataclasses: the single source of truth for a run.

Importable with the standard library only: ptychodus builds these objects in its GUI process,
pickles them and sends them to a worker. All classes are mutable (ptychodus sets
``config.model.N`` after construction) and ``N=0`` is allowed until the data fix it.

Core code receives these objects explicitly. ``ptycho.params.cfg`` is a legacy mirror written by
:func:`update_legacy_dict` for old callers; nothing in the core reads it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ptycho.errors import InputError

SUPPORTED_N = (64, 128, 256)
AMP_ACTIVATIONS = ("sigmoid", "swish", "softplus", "relu")
ARCHITECTURES = ("cnn", "unet", "resnet", "ffno")
MODEL_TYPES = ("pinn", "supervised")
BACKENDS = ("pytorch", "tensorflow")
MEASUREMENTS = ("auto", "amplitude", "intensity")
LR_SCHEDULES = ("plateau", "cosine")
MAX_PROBE_MODES = 16


def _apply_n_images_alias(config) -> None:
    """Copy the deprecated ``n_images`` into ``n_groups`` (when unset), with a warning."""
    if config.n_images is not None:
        warnings.warn(f"{type(config).__name__}.n_images is deprecated; use n_groups",
                      DeprecationWarning, stacklevel=4)
        if config.n_groups is None:
            config.n_groups = config.n_images


@dataclass
class ModelConfig:
    """Network and forward-model settings.

    Attributes
    ----------
    N : int
        Diffraction pattern (and object patch) size in pixels; one of 64, 128, 256, or 0 until
        the data fix it.
    gridsize : int
        g: each sample groups C = g**2 neighbouring scan positions.
    n_filters_scale : int
        Multiplier s of the convolution filter ladder.
    model_type : {'pinn', 'supervised'}
        'pinn' trains through the physics (Poisson NLL); 'supervised' regresses ground-truth
        patches (needs ``objectGuess``).
    architecture : {'cnn', 'unet', 'resnet', 'ffno'}
        Generator network: 'cnn' (encoder, amplitude and phase decoders), 'unet' (the cnn
        with skip connections from each encoder level into both decoders; same parameter
        names, more input channels), 'resnet' (the cnn with every level a residual block,
        ``h = relu(conv1(x)); relu(h + conv2(h))``; the cnn's parameters exactly) or 'ffno'
        (a factorised Fourier neural operator at full resolution: spectral convolutions along
        rows and columns give every output pixel a view of the whole pattern; see
        ``ptycho.backends.architecture.ffno_sizes``). Archives without the field are 'cnn'.
    amp_activation : {'sigmoid', 'swish', 'softplus', 'relu'}
        Amplitude head activation.
    object_big : bool
        Merge the C patches of a sample on one canvas and re-extract them (overlap constraint).
    probe_big : bool
        Predict the border outside the central N/2 box with an extra branch.
    probe_mask : bool
        Multiply the illuminated field by the disk of radius N/4.
    pad_object : bool
        Predict only the central N/2 box, zero-padded to N.
    probe_scale : float
        Probe normalisation divisor (see ``ptycho.physics.normalize_probe``).
    gaussian_smoothing_sigma : float
        Sigma in pixels of the smoothing applied to the illuminated field; 0 disables it.
    probe_modes : int
        M, the incoherent probe modes of the forward model, ``I = sum_k |F(P_k * O)|**2``
        (1 to :data:`MAX_PROBE_MODES`). 1 (the default, and archives without the field) is
        the single coherent probe (N, N); M > 1 starts from the modes the data give,
        completed and orthogonalised by :func:`ptycho.physics.initial_probe_modes`, and the
        archive stores (M, N, N). See docs/probe-modes.md.
    """

    N: int = 64
    gridsize: int = 1
    n_filters_scale: int = 2
    model_type: Literal["pinn", "supervised"] = "pinn"
    architecture: Literal["cnn", "unet", "resnet", "ffno"] = "cnn"
    amp_activation: str = "sigmoid"
    object_big: bool = True
    probe_big: bool = True
    probe_mask: bool = False
    pad_object: bool = True
    probe_scale: float = 4.0
    gaussian_smoothing_sigma: float = 0.0
    probe_modes: int = 1


@dataclass
class TrainingConfig:
    """Settings of one training run.

    ``nphotons=None`` (the default) takes the measured mean photon count per pattern, so that
    the Poisson model matches the real noise. ``n_groups=None`` anchors a group at every scan
    position. ``n_images`` is a deprecated alias of ``n_groups``. ``init_weights`` names a
    model archive (either backend, same network configuration) whose generator weights
    replace the random initialisation (``ptychopinn parity`` starts both backends from it).

    ``train_data_file`` is one scan (a Path) or a list of scans with the same pattern size N,
    a *library* (``--train_data_file A.npz B.npz``; a one-element list becomes its Path, so
    one file trains and archives exactly as before). Each scan of a library is grouped on its
    own (groups never mix scans; ``n_groups`` limits the groups of each scan), normalised with
    its own factor, keeps its own photon count (unless ``nphotons`` sets one for every scan)
    and intensity scale ``s_k``, and meets its own probe in the forward model; see
    :func:`ptycho.workflows.training.train`. ``probe_trainable`` needs a single scan.

    ``targets='refine'`` or ``'refine:K'`` first reconstructs the training scan with the
    iterative solver (:mod:`ptycho.refine`, K iterations; default its own) and trains against
    those patches with weight ``realspace_mae_weight`` (amplitude and phase MAE; when left at 0,
    10 per mean count per detector pixel: ``ptycho.workflows.targets.default_target_weight``)
    beside the physics loss; the solver's time counts in the training time. When the training
    learns or estimates the probe (``probe_trainable``, or ``model.probe_modes`` > 1) the solver
    also refines the probe (every mode) and the network trains with that refined probe, which
    the archive then holds (``ptycho.workflows.targets.solver_refines_probe``); a fixed
    single-mode probe stays as given.

    Learning-rate schedule and clipping (the same in both backends, see
    :mod:`ptycho.backends.schedule`):

    - ``lr_schedule='plateau'`` (default): Adam at ``learning_rate``, multiplied by
      ``plateau_factor`` after more than ``plateau_patience`` epochs without improvement of the
      monitored loss, down to ``plateau_min_lr`` (a learning rate).
    - ``lr_schedule='cosine'``: per optimiser step, a linear warm-up over ``lr_warmup_epochs``
      epochs (a number >= 0, may be fractional; 0: none) from ``learning_rate / W`` (W warm-up
      steps) to ``learning_rate``, then a half cosine down to ``lr_min`` (a learning rate,
      0 <= lr_min <= learning_rate) at the end of ``nepochs`` epochs. ``lr_warmup_epochs`` and
      ``lr_min`` apply to this schedule only; resumed runs continue it at the step they
      stopped (a larger ``--nepochs`` on resume stretches the decay over the new total).
    - ``grad_clip_norm``: before each optimiser step, scale all gradients by
      ``min(1, grad_clip_norm / ||g||)`` with ``||g||`` the global L2 norm over every trainable
      parameter (``None`` or 0: off).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    train_data_file: Path | list[Path] | None = None
    test_data_file: Path | None = None
    batch_size: int = 16
    nepochs: int = 50
    mae_weight: float = 0.0
    nll_weight: float = 1.0
    realspace_mae_weight: float = 0.0
    realspace_weight: float = 0.0
    targets: str | None = None
    nphotons: float | None = None
    n_groups: int | None = None
    n_images: int | None = None
    n_subsample: int | None = None
    subsample_seed: int | None = None
    neighbor_count: int = 4
    enable_oversampling: bool = False
    neighbor_pool_size: int | None = None
    sequential_sampling: bool = False
    positions_provided: bool = True
    probe_trainable: bool = False
    intensity_scale_trainable: bool = True
    learning_rate: float = 1e-3
    validation_fraction: float = 0.05
    early_stop_patience: int = 3
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    plateau_min_lr: float = 1e-4
    lr_schedule: Literal["plateau", "cosine"] = "plateau"
    lr_warmup_epochs: float = 1.0
    lr_min: float = 0.0
    grad_clip_norm: float | None = None
    seed: int = 42
    measurement: str = "auto"
    output_dir: Path = Path("training_outputs")
    backend: Literal["pytorch", "tensorflow"] = "pytorch"
    init_weights: Path | None = None

    def __post_init__(self) -> None:
        _apply_n_images_alias(self)
        if isinstance(self.train_data_file, (list, tuple)) and len(self.train_data_file) == 1:
            self.train_data_file = self.train_data_file[0]


def training_files(config: TrainingConfig) -> list[Path]:
    """The training scans of ``config`` as a list (empty when ``train_data_file`` is unset)."""
    files = config.train_data_file
    if files is None:
        return []
    return [Path(f) for f in files] if isinstance(files, (list, tuple)) else [Path(files)]


@dataclass
class InferenceConfig:
    """Settings of one inference run. ``n_groups=None`` covers every scan position."""

    model: ModelConfig = field(default_factory=ModelConfig)
    model_path: Path = Path()
    test_data_file: Path = Path()
    n_groups: int | None = None
    n_images: int | None = None
    n_subsample: int | None = None
    subsample_seed: int | None = None
    neighbor_count: int = 4
    enable_oversampling: bool = False
    neighbor_pool_size: int | None = None
    debug: bool = False
    measurement: str = "auto"
    output_dir: Path = Path("inference_outputs")
    backend: Literal["pytorch", "tensorflow"] = "pytorch"

    def __post_init__(self) -> None:
        _apply_n_images_alias(self)


#: Default samples per predict batch. Small batches keep the activations in the CPU caches
#: (about 25 % faster than 256 on a 2-core CPU, see benchmarks); pass a larger
#: ``inference_batch_size`` / ``--batch-size`` on a GPU.
DEFAULT_PREDICT_BATCH = 16


@dataclass
class ExecutionConfig:
    """Where and how computation runs. Never written to the legacy ``params.cfg``.

    Attributes
    ----------
    accelerator : str
        Lightning accelerator: 'auto', 'cpu', 'gpu', 'cuda', 'mps'.
    devices : int or 'auto'
        Number of devices per node.
    strategy : str
        Lightning strategy ('auto', 'ddp', ...).
    num_nodes : int
        Nodes for multi-node training.
    precision : str
        Lightning precision, e.g. '32-true' or 'bf16-mixed'.
    num_workers : int
        Data loader worker processes.
    logger : str
        'csv' (default), 'tensorboard', 'mlflow' or 'none'.
    progress_bar : bool
        Show a progress bar during training.
    inference_batch_size : int
        Samples per predict batch (default :data:`DEFAULT_PREDICT_BATCH`).
    """

    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    num_workers: int = 0
    logger: str = "csv"
    progress_bar: bool = True
    inference_batch_size: int = DEFAULT_PREDICT_BATCH


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

def _invalid(owner: str, name: str, value: Any, allowed: str) -> InputError:
    return InputError("invalid value", f"{owner}.{name}", allowed, repr(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_model_config(config: ModelConfig, *, require_n: bool = True) -> None:
    """Raise :class:`~ptycho.errors.InputError` (a ``ValueError``) for the first bad field.

    ``require_n=False`` accepts ``N=0`` (not yet known).
    """
    owner = "ModelConfig"
    allowed_n = " or ".join(str(n) for n in SUPPORTED_N)
    if not _is_int(config.N) or (config.N not in SUPPORTED_N and (require_n or config.N != 0)):
        raise _invalid(owner, "N", config.N, f"one of {allowed_n}")
    if not _is_int(config.gridsize) or config.gridsize < 1:
        raise _invalid(owner, "gridsize", config.gridsize, "an integer >= 1")
    if not _is_int(config.n_filters_scale) or config.n_filters_scale < 1:
        raise _invalid(owner, "n_filters_scale", config.n_filters_scale, "an integer >= 1")
    if config.model_type not in MODEL_TYPES:
        raise _invalid(owner, "model_type", config.model_type, f"one of {', '.join(MODEL_TYPES)}")
    if config.architecture not in ARCHITECTURES:
        raise _invalid(owner, "architecture", config.architecture, f"one of {', '.join(ARCHITECTURES)}")
    if config.amp_activation not in AMP_ACTIVATIONS:
        raise _invalid(
            owner, "amp_activation", config.amp_activation, f"one of {', '.join(AMP_ACTIVATIONS)}"
        )
    for name in ("object_big", "probe_big", "probe_mask", "pad_object"):
        if not isinstance(getattr(config, name), bool):
            raise _invalid(owner, name, getattr(config, name), "true or false")
    if not _is_number(config.probe_scale) or config.probe_scale <= 0:
        raise _invalid(owner, "probe_scale", config.probe_scale, "a number > 0")
    if not _is_number(config.gaussian_smoothing_sigma) or config.gaussian_smoothing_sigma < 0:
        raise _invalid(owner, "gaussian_smoothing_sigma", config.gaussian_smoothing_sigma, "a number >= 0")
    if not _is_int(config.probe_modes) or not 1 <= config.probe_modes <= MAX_PROBE_MODES:
        raise _invalid(owner, "probe_modes", config.probe_modes,
                       f"an integer from 1 to {MAX_PROBE_MODES}")


def _validate_sampling(owner: str, config: Any) -> None:
    for name in ("n_groups", "n_subsample"):
        value = getattr(config, name)
        if value is not None and (not _is_int(value) or value < 1):
            raise _invalid(owner, name, value, "an integer >= 1 or unset")
    if not _is_int(config.neighbor_count) or config.neighbor_count < 1:
        raise _invalid(owner, "neighbor_count", config.neighbor_count, "an integer >= 1")
    if config.measurement not in MEASUREMENTS:
        raise _invalid(owner, "measurement", config.measurement, f"one of {', '.join(MEASUREMENTS)}")
    if config.backend not in BACKENDS:
        raise _invalid(owner, "backend", config.backend, f"one of {', '.join(BACKENDS)}")


def parse_targets(targets: str | None, owner: str = "TrainingConfig") -> int | None:
    """Solver iterations of ``targets`` (``'refine'`` or ``'refine:K'``); None when unset.

    ``'refine'`` takes the solver's default number of iterations (returned as 0).
    """
    if targets in (None, "", "none"):
        return None
    name, _, count = str(targets).partition(":")
    if name == "refine" and not count:
        return 0
    if name == "refine" and count.isdigit() and int(count) >= 1:
        return int(count)
    raise _invalid(owner, "targets", targets, "refine or refine:K with K >= 1 solver iterations")


def validate_training_config(config: TrainingConfig, *, require_n: bool = True,
                             n_scans: int | None = None) -> None:
    """Validate a :class:`TrainingConfig` (and its model); raise ``InputError`` on the first bad field.

    ``n_scans``: the number of training scans when they are given as objects rather than
    read from ``train_data_file`` (default: the number of files there).
    """
    validate_model_config(config.model, require_n=require_n)
    owner = "TrainingConfig"
    if not _is_int(config.batch_size) or config.batch_size < 1:
        raise _invalid(owner, "batch_size", config.batch_size, "an integer >= 1")
    if not _is_int(config.nepochs) or config.nepochs < 1:
        raise _invalid(owner, "nepochs", config.nepochs, "an integer >= 1")
    for name in ("mae_weight", "nll_weight", "realspace_mae_weight", "realspace_weight"):
        value = getattr(config, name)
        if not _is_number(value) or value < 0:
            raise _invalid(owner, name, value, "a number >= 0")
    if config.model.model_type == "pinn" and config.nll_weight == 0 and config.mae_weight == 0:
        raise _invalid(owner, "nll_weight", config.nll_weight, "> 0 (or mae_weight > 0) for a PINN")
    parse_targets(config.targets, owner)
    if config.nphotons is not None and (not _is_number(config.nphotons) or config.nphotons <= 0):
        raise _invalid(owner, "nphotons", config.nphotons, "a number > 0 or unset (measured)")
    if not _is_number(config.learning_rate) or config.learning_rate <= 0:
        raise _invalid(owner, "learning_rate", config.learning_rate, "a number > 0")
    if not _is_number(config.validation_fraction) or not 0 <= config.validation_fraction < 1:
        raise _invalid(owner, "validation_fraction", config.validation_fraction, "a number in [0, 1)")
    for name in ("early_stop_patience", "plateau_patience"):
        value = getattr(config, name)
        if not _is_int(value) or value < 1:
            raise _invalid(owner, name, value, "an integer >= 1")
    if not _is_number(config.plateau_factor) or not 0 < config.plateau_factor < 1:
        raise _invalid(owner, "plateau_factor", config.plateau_factor, "a number in (0, 1)")
    if not _is_number(config.plateau_min_lr) or config.plateau_min_lr < 0:
        raise _invalid(owner, "plateau_min_lr", config.plateau_min_lr, "a number >= 0")
    if config.lr_schedule not in LR_SCHEDULES:
        raise _invalid(owner, "lr_schedule", config.lr_schedule, f"one of {', '.join(LR_SCHEDULES)}")
    if not _is_number(config.lr_warmup_epochs) or config.lr_warmup_epochs < 0:
        raise _invalid(owner, "lr_warmup_epochs", config.lr_warmup_epochs, "a number >= 0 (epochs)")
    if not _is_number(config.lr_min) or not 0 <= config.lr_min <= config.learning_rate:
        raise _invalid(owner, "lr_min", config.lr_min,
                       f"a number in [0, learning_rate = {config.learning_rate:g}]")
    if config.grad_clip_norm is not None and (not _is_number(config.grad_clip_norm)
                                              or config.grad_clip_norm < 0):
        raise _invalid(owner, "grad_clip_norm", config.grad_clip_norm,
                       "a number > 0, or 0 or unset (no clipping)")
    if not _is_int(config.seed) or config.seed < 0:
        raise _invalid(owner, "seed", config.seed, "an integer >= 0")
    files = config.train_data_file
    if isinstance(files, (list, tuple)) and (
            not files or not all(isinstance(f, (str, Path)) for f in files)):
        raise _invalid(owner, "train_data_file", files, "a path or a list of paths")
    if config.probe_trainable and (n_scans or len(training_files(config))) > 1:
        raise _invalid(owner, "probe_trainable", config.probe_trainable,
                       "false with several training scans (each keeps its own probe as given; "
                       "train one scan to refine its probe)")
    _validate_sampling(owner, config)


def validate_inference_config(config: InferenceConfig) -> None:
    """Validate an :class:`InferenceConfig`; raise ``InputError`` on the first bad field."""
    validate_model_config(config.model, require_n=False)
    _validate_sampling("InferenceConfig", config)


def validate_execution_config(config: ExecutionConfig) -> None:
    """Validate an :class:`ExecutionConfig`; raise ``InputError`` on the first bad field."""
    owner = "ExecutionConfig"
    accelerators = ("auto", "cpu", "gpu", "cuda", "mps")
    if config.accelerator not in accelerators:
        raise _invalid(owner, "accelerator", config.accelerator, f"one of {', '.join(accelerators)}")
    if not (config.devices == "auto" or (_is_int(config.devices) and config.devices >= 1)):
        raise _invalid(owner, "devices", config.devices, "an integer >= 1 or 'auto'")
    if not _is_int(config.num_nodes) or config.num_nodes < 1:
        raise _invalid(owner, "num_nodes", config.num_nodes, "an integer >= 1")
    precisions = ("32-true", "32", "16-mixed", "bf16-mixed", "64-true", "64")
    if str(config.precision) not in precisions:
        raise _invalid(owner, "precision", config.precision, f"one of {', '.join(precisions)}")
    if not _is_int(config.num_workers) or config.num_workers < 0:
        raise _invalid(owner, "num_workers", config.num_workers, "an integer >= 0")
    loggers = ("csv", "tensorboard", "mlflow", "none")
    if config.logger not in loggers:
        raise _invalid(owner, "logger", config.logger, f"one of {', '.join(loggers)}")
    if not _is_int(config.inference_batch_size) or config.inference_batch_size < 1:
        raise _invalid(owner, "inference_batch_size", config.inference_batch_size, "an integer >= 1")


# ---------------------------------------------------------------------------------------------
# Legacy bridge (ptycho.params.cfg)
# ---------------------------------------------------------------------------------------------

KEY_MAPPINGS = {
    "object_big": "object.big",
    "probe_big": "probe.big",
    "probe_mask": "probe.mask",
    "probe_trainable": "probe.trainable",
    "intensity_scale_trainable": "intensity_scale.trainable",
    "positions_provided": "positions.provided",
    "output_dir": "output_prefix",
    "train_data_file": "train_data_file_path",
    "test_data_file": "test_data_file_path",
}


def dataclass_to_legacy_dict(config: Any) -> dict[str, Any]:
    """Flatten a config dataclass (and its nested ``model``) into legacy ``params.cfg`` keys.

    Paths become strings; names are translated with :data:`KEY_MAPPINGS`.
    """
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            flat.update(dataclass_to_legacy_dict(value))
            continue
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, (list, tuple)):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        flat[KEY_MAPPINGS.get(f.name, f.name)] = value
    return flat


def update_legacy_dict(cfg: dict, config: Any) -> dict:
    """Write every non-None field of ``config`` into the legacy dict ``cfg`` and return it."""
    for key, value in dataclass_to_legacy_dict(config).items():
        if value is not None:
            cfg[key] = value
    return cfg
