"""Resumable training checkpoints: ``<output_dir>/resume.json`` plus a backend state file.

Written by the training workflow when training is interrupted (:mod:`ptycho.runcontrol`, which
also defines the in-memory :class:`~ptycho.runcontrol.Checkpoint` the backends produce and
consume), read by ``ptychopinn train --resume OUTPUT_DIR``, removed when the resumed run
completes.

``resume.json``  format version, backend, the run's full TrainingConfig (``train_data_file``,
                 one path or a list, made absolute), a fingerprint of the training data
                 (per scan under ``scans`` for several training scans), the progress (epochs
                 completed, per-epoch history, best epoch and score, backend counters), and the
                 name and sha256 of the state file
``resume.pt``    PyTorch: ``torch.save`` of tensors and plain containers only (model, best model,
                 optimiser, LR schedule, early stopping, RNG), read with ``weights_only=True``
``resume.npz``   TensorFlow: model, best-model and optimiser variables (``allow_pickle=False``)

Both files are written atomically, the state file first: a checkpoint whose ``resume.json``
does not match its state file is refused, never half-loaded. Nothing is unpickled.

Semantics: training stops after the step in progress; the resumed run continues from those
weights and optimiser moments, restarting the interrupted epoch (its finished steps are kept in
the weights, not in the epoch count), with the learning-rate schedule, early-stopping counters,
history and best weights of the completed epochs restored, up to ``--nepochs`` in total.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from ptycho.errors import InputError, first_line
from ptycho.fileio import write_bytes_atomic, write_text_atomic
from ptycho.runcontrol import STATE_NAMES, Checkpoint

RESUME_NAME = "resume.json"
FORMAT_VERSION = 1
MAX_STATE_BYTES = 8 * 1024 ** 3
# Options that may change when resuming (everything else must match the interrupted run).
RESUMABLE_CHANGES = ("nepochs", "test_data_file", "output_dir", "n_images")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_to_json(config) -> dict:
    """TrainingConfig as a flat JSON dict (model fields beside the others; absolute data paths)."""
    from ptycho.archive import _jsonable

    flat = _jsonable(config)
    model = flat.pop("model", {})
    flat.update(model)
    for key in ("train_data_file", "test_data_file"):
        value = flat.get(key)
        if isinstance(value, list):
            flat[key] = [str(Path(v).expanduser().resolve()) for v in value]
        elif value:
            flat[key] = str(Path(value).expanduser().resolve())
    return flat


def checkpoint_exists(output_dir: str | Path) -> bool:
    return (Path(output_dir) / RESUME_NAME).is_file()


def write_checkpoint(output_dir: str | Path, checkpoint: Checkpoint, config, data: dict) -> Path:
    """Write the state file, then ``resume.json`` (both atomically); return the JSON path."""
    from ptycho import __version__
    from ptycho.archive import utc_now_iso

    output_dir = Path(output_dir)
    write_bytes_atomic(output_dir / checkpoint.state_name, checkpoint.state)
    document = {
        "format_version": FORMAT_VERSION,
        "ptychopinn_version": __version__,
        "created": utc_now_iso(),
        "backend": checkpoint.backend,
        "state_file": checkpoint.state_name,
        "state_sha256": _sha256(checkpoint.state),
        "training_config": config_to_json(config),
        "data": data,
        "progress": checkpoint.progress,
    }
    path = output_dir / RESUME_NAME
    write_text_atomic(path, json.dumps(document, indent=2, sort_keys=True))
    return path


def remove_checkpoint(output_dir: str | Path) -> None:
    """Delete ``resume.json`` (first: a partial removal leaves no checkpoint) and state files."""
    output_dir = Path(output_dir)
    (output_dir / RESUME_NAME).unlink(missing_ok=True)
    for name in STATE_NAMES.values():
        (output_dir / name).unlink(missing_ok=True)


def read_checkpoint(output_dir: str | Path) -> Checkpoint:
    """Read and verify the checkpoint in ``output_dir``.

    Raises
    ------
    InputError
        No checkpoint, unreadable or foreign JSON, unknown format, missing or modified state file.
    """
    output_dir = Path(output_dir)
    path = output_dir / RESUME_NAME
    where = str(path)
    if not output_dir.is_dir():
        raise InputError("not a training output folder", "--resume",
                         "the --output_dir of an interrupted `ptychopinn train`", str(output_dir))
    if not path.is_file():
        raise InputError("no resumable checkpoint", "--resume",
                         f"a folder holding {RESUME_NAME} (written when training is interrupted "
                         f"by Ctrl+C or SIGTERM)", f"none in {output_dir}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError("unreadable checkpoint", where, "valid JSON written by ptychopinn",
                         first_line(exc, with_type=True)) from None
    if not isinstance(document, dict):
        raise InputError("unreadable checkpoint", where, "a JSON object", type(document).__name__)
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError("unknown checkpoint format version", where,
                         f"format_version {FORMAT_VERSION} (resume with the ptychopinn version that "
                         f"wrote it)", repr(version))
    backend = document.get("backend")
    if backend not in STATE_NAMES or document.get("state_file") != STATE_NAMES[backend]:
        raise InputError("invalid checkpoint", where,
                         f"backend one of {', '.join(STATE_NAMES)} with its state file",
                         f"{backend!r}, {document.get('state_file')!r}")
    config = document.get("training_config")
    progress = document.get("progress")
    data = document.get("data") or {}
    if not isinstance(config, dict) or not isinstance(progress, dict) or not isinstance(data, dict):
        raise InputError("invalid checkpoint", where,
                         "training_config, progress and data objects", "missing or malformed")
    epochs = progress.get("epochs_completed")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0 or \
            not isinstance(progress.get("history", {}), dict):
        raise InputError("invalid checkpoint", f"{where}:progress",
                         "epochs_completed >= 0 and a history", repr(epochs))
    state_path = output_dir / STATE_NAMES[backend]
    try:
        if state_path.is_symlink() or not state_path.is_file():
            raise FileNotFoundError(str(state_path))
        if state_path.stat().st_size > MAX_STATE_BYTES:
            raise InputError("oversized checkpoint", str(state_path),
                             f"at most {MAX_STATE_BYTES} bytes", f"{state_path.stat().st_size} bytes")
        state = state_path.read_bytes()
    except OSError as exc:
        raise InputError("missing checkpoint state", str(state_path),
                         f"the state file named in {RESUME_NAME}", type(exc).__name__) from None
    if _sha256(state) != document.get("state_sha256"):
        raise InputError("checksum mismatch", str(state_path),
                         f"the sha256 recorded in {RESUME_NAME} (the checkpoint is incomplete or "
                         f"was modified; train again without --resume)")
    return Checkpoint(backend=backend, state=state, progress=progress, config=config, data=data,
                      source=str(path))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) or isinstance(b, list):  # several training scans, in order
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) \
            and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, Path) or isinstance(b, Path):
        if a is None or b is None:
            return a is b
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    if isinstance(a, float) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b


def resume_training_config(checkpoint: Checkpoint, output_dir: str | Path,
                           cli_values: dict, file_values: dict | None = None):
    """The TrainingConfig of the interrupted run, with ``--nepochs`` (and test data) updated.

    Options given again must equal the saved ones (so the original command line plus
    ``--resume`` works); a different value is an InputError naming the option.
    """
    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.config.files import ConfigValues, build_training_config

    names = {f.name for cls in (TrainingConfig, ModelConfig) for f in dataclasses.fields(cls)}
    saved_values = ConfigValues({k: v for k, v in checkpoint.config.items() if k in names},
                                source=checkpoint.source or RESUME_NAME)
    saved_values.pop("n_images", None)
    saved = build_training_config({}, saved_values)
    requested = dict(file_values or {})
    requested.update({k: v for k, v in cli_values.items() if v is not None})
    config = build_training_config(requested, saved_values)
    output_dir = Path(output_dir)
    if requested.get("output_dir") is not None and not _same(Path(requested["output_dir"]),
                                                             output_dir):
        raise InputError("option differs from the interrupted run", "--output_dir",
                         f"the --resume folder {output_dir} (or omit --output_dir)",
                         str(requested["output_dir"]))
    for name in sorted(requested):
        if name in RESUMABLE_CHANGES or name not in names:
            continue
        owner_new = config.model if hasattr(config.model, name) else config
        owner_old = saved.model if hasattr(saved.model, name) else saved
        new, old = getattr(owner_new, name), getattr(owner_old, name)
        if not _same(new, old):
            raise InputError("option differs from the interrupted run", f"--{name}",
                             f"{old!r} as saved in {checkpoint.source or RESUME_NAME} (omit it to "
                             f"keep the saved value)", repr(new))
    config.output_dir = output_dir
    if config.nepochs <= checkpoint.epochs_completed:
        raise InputError("nothing to resume", "--nepochs",
                         f"more than the {checkpoint.epochs_completed} epochs already completed",
                         str(config.nepochs))
    return config


def data_fingerprint(scan, nphotons: float, n_groups: int) -> dict:
    """What must not change between an interrupted run and its resumption."""
    return {"n_positions": int(scan.n_positions), "N": int(scan.N),
            "nphotons": float(nphotons), "n_groups": int(n_groups)}


def check_same_data(checkpoint: Checkpoint, fingerprint: dict, source: str) -> None:
    """Refuse to resume on different training data.

    ``fingerprint`` is :func:`data_fingerprint` of the one training scan, or
    ``{'scans': [data_fingerprint of each scan]}`` for several.
    """
    saved = checkpoint.data
    if "scans" in saved or "scans" in fingerprint:
        old, new = saved.get("scans") or [saved], fingerprint.get("scans") or [fingerprint]
        if len(old) != len(new):
            raise InputError("training data changed since the interrupted run", source,
                             f"{len(old)} training scan(s) as when the checkpoint was written",
                             f"{len(new)}")
        for old_scan, new_scan in zip(old, new):
            _check_same_scan(old_scan, new_scan, source)
        return
    _check_same_scan(saved, fingerprint, source)


def _check_same_scan(saved: dict, fingerprint: dict, source: str) -> None:
    for key, value in fingerprint.items():
        old = saved.get(key)
        if old is None:
            continue
        same = math.isclose(float(old), float(value), rel_tol=1e-6) if key == "nphotons" \
            else old == value
        if not same:
            raise InputError("training data changed since the interrupted run", source,
                             f"{key} = {old} as when the checkpoint was written", str(value))
