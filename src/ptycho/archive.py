"""The model archive ``wts.h5.zip`` (design section 5), shared by both backends.

Members::

    manifest.json   format version, backend, versions, creation time (ISO 8601 UTC), full model
                    and training configuration, N, gridsize, intensity scale, normalisation,
                    history summary, and the sha256 of every other member
    probe.npy       the (trained) normalised probe, complex64 (N, N); a mixed-state model
                    (``model_config.probe_modes`` M > 1) stores its M modes, (M, N, N)
    weights.*       backend payload (torch state dict loaded with weights_only=True, or Keras
                    ``model.weights.h5`` loaded into a model rebuilt from the manifest)
    probes.npy      only for a model trained on K > 1 scans: their normalised probes,
                    complex64 (K, N, N) ((K, M, N, N) with M probe modes), in the order of
                    the manifest's ``training_scans``

Archives without ``model_config.probe_modes`` (written before mixed-state probes) are
single-mode models (the ModelConfig default 1), and a single-mode archive is written exactly
as before.

A model trained on several scans (a library) is the same network with the same weights
layout: ``probe.npy`` and the model's probe are the first scan's, and ``intensity_scale``
and ``nphotons`` start from the first scan's photon count. The manifest adds
``training_scans``, one record per scan (``file``, ``n_positions``, ``n_groups``,
``nphotons``, ``intensity_scale`` s_k and ``norm_factor``); archives of one scan have neither
``training_scans`` nor ``probes.npy`` (their layout is unchanged). Inference never needs
them: a new scan is normalised with its own factor, and the CLI weights the stitching of a
library model's reconstruction by the new scan's own probe (see
:func:`ptycho.workflows.inference.stitching_probe`).

Reading never unpickles or deserialises code. Member names, sizes, types and checksums are
verified, and writes are atomic.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptycho import physics
from ptycho.errors import ArchiveError, InputError
from ptycho.fileio import atomic_path

ARCHIVE_NAME = "wts.h5.zip"
MANIFEST_NAME = "manifest.json"
PROBE_NAME = "probe.npy"
PROBES_NAME = "probes.npy"
FORMAT_VERSION = 1
MAX_MEMBER_BYTES = 2 * 1024 ** 3
MAX_MANIFEST_BYTES = 16 * 1024 ** 2
PAYLOAD_NAMES = ("weights.pt", "model.weights.h5")


@dataclass
class ModelArchive:
    """The verified contents of an archive: manifest, probe and backend payload bytes."""

    manifest: dict
    probe: np.ndarray
    payload: bytes
    source: str
    probes: np.ndarray | None = None
    """(K, N, N) complex ((K, M, N, N) with M probe modes): the probes of the K > 1 training
    scans, else None."""


def training_scan_count(manifest: dict) -> int:
    """How many scans the archived model was trained on (1 without ``training_scans``)."""
    scans = manifest.get("training_scans")
    return len(scans) if isinstance(scans, list) and scans else 1


def utc_now_iso() -> str:
    """Current time as ISO 8601 UTC with a 'Z' suffix (seconds precision)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def history_summary(history: dict) -> dict:
    """Compact, JSON-safe summary of a per-epoch history dict."""
    summary: dict[str, Any] = {"epochs": len(history.get("epoch", []))}
    for key in ("train_loss", "val_loss"):
        values = history.get(key) or []
        if values:
            summary[f"final_{key}"] = float(values[-1])
            summary[f"min_{key}"] = float(np.min(values))
    if "best_epoch" in history:
        summary["best_epoch"] = int(history["best_epoch"])
    return summary


def build_manifest(model, training_config, *, nphotons: float, payload: bytes,
                   probe_bytes: bytes, training_scans: list[dict] | None = None,
                   probes_bytes: bytes | None = None) -> dict:
    """Assemble the manifest for a trained model (see the module docstring).

    ``training_scans`` and ``probes_bytes`` (the ``probes.npy`` member) describe a model
    trained on several scans; both None for one scan.
    """
    from ptycho import __version__

    training = _jsonable(training_config)
    training.pop("model", None)
    cfg = model.model_config
    manifest = {
        "format_version": FORMAT_VERSION,
        "backend": model.backend,
        "payload": model.payload_name,
        "ptychopinn_version": __version__,
        "created": utc_now_iso(),
        "model_config": _jsonable(cfg),
        "training_config": training,
        "N": int(cfg.N),
        "gridsize": int(cfg.gridsize),
        "intensity_scale": float(model.intensity_scale),
        "nphotons": float(nphotons),
        "normalisation": {"method": "per-dataset scalar", "mean_pattern_power": (cfg.N / 2) ** 2},
        "history": _jsonable(model.history),
        "history_summary": history_summary(model.history),
        "files": {PROBE_NAME: _sha256(probe_bytes), model.payload_name: _sha256(payload)},
    }
    if training_scans is not None:
        manifest["training_scans"] = _jsonable(training_scans)
        manifest["files"][PROBES_NAME] = _sha256(probes_bytes)
    return manifest


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, np.complex64), allow_pickle=False)
    return buffer.getvalue()


def write_archive(output_dir: str | Path, model, training_config, *, nphotons: float,
                  training_scans: list[dict] | None = None,
                  probes: np.ndarray | None = None) -> Path:
    """Write ``<output_dir>/wts.h5.zip`` atomically and return its path.

    A model trained on K > 1 scans also passes ``training_scans`` (K JSON-ready records) and
    ``probes`` ((K, N, N) complex, or (K, M, N, N) with M probe modes: their normalised
    probes); see the module docstring.
    """
    probe_bytes = _npy_bytes(model.probe)
    probes_bytes = _npy_bytes(probes) if probes is not None else None
    payload = model.payload_bytes()
    manifest = build_manifest(model, training_config, nphotons=nphotons, payload=payload,
                              probe_bytes=probe_bytes, training_scans=training_scans,
                              probes_bytes=probes_bytes)
    destination = Path(output_dir) / ARCHIVE_NAME
    with atomic_path(destination) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True))
            archive.writestr(PROBE_NAME, probe_bytes)
            if probes_bytes is not None:
                archive.writestr(PROBES_NAME, probes_bytes)
            archive.writestr(model.payload_name, payload)
    return destination


def resolve_archive_path(path: str | Path) -> Path:
    """Accept an archive file, a folder holding ``wts.h5.zip``, or an extracted archive folder."""
    path = Path(path)
    if path.is_dir():
        if (path / ARCHIVE_NAME).is_file():
            return path / ARCHIVE_NAME
        if (path / MANIFEST_NAME).is_file():
            return path
        raise ArchiveError("no model archive", str(path),
                           f"a folder with {ARCHIVE_NAME} or an extracted archive with {MANIFEST_NAME}")
    if path.is_file():
        return path
    raise ArchiveError("model not found", str(path),
                       f"a training output folder containing {ARCHIVE_NAME} or the archive itself")


def _check_member_name(name: str, source: str) -> None:
    if name.startswith(("/", "\\")) or ".." in Path(name).parts or "\\" in name or ":" in name:
        raise ArchiveError("unsafe member path", f"{source}:{name}", "a plain file name")
    if "/" in name:
        raise ArchiveError("unexpected folder in archive", f"{source}:{name}",
                           "only top-level members")


KNOWN_MEMBERS = (MANIFEST_NAME, PROBE_NAME, PROBES_NAME, *PAYLOAD_NAMES)


def _read_zip_members(path: Path) -> dict[str, bytes]:
    """The known members of a zip archive (others are checked but never read)."""
    source = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except Exception as exc:  # any failure to parse the zip structure
        raise ArchiveError("unreadable archive", source, "a valid wts.h5.zip",
                           type(exc).__name__) from None
    members: dict[str, bytes] = {}
    with archive:
        seen: set[str] = set()
        for info in archive.infolist():
            _check_member_name(info.filename, source)
            if info.filename in seen:
                raise ArchiveError("duplicate member", f"{source}:{info.filename}",
                                   "each member once")
            seen.add(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ArchiveError("symbolic link in archive", f"{source}:{info.filename}",
                                   "regular files only")
            if info.filename not in KNOWN_MEMBERS:
                continue
            limit = MAX_MANIFEST_BYTES if info.filename == MANIFEST_NAME else MAX_MEMBER_BYTES
            if info.file_size > limit:
                raise ArchiveError("oversized member", f"{source}:{info.filename}",
                                   f"at most {limit} bytes", f"{info.file_size} bytes")
            try:
                with archive.open(info) as handle:
                    data = handle.read(limit + 1)
            except Exception as exc:  # bad CRC, zlib error, encryption, unknown compression
                raise ArchiveError("corrupt member", f"{source}:{info.filename}",
                                   "an intact archive", type(exc).__name__) from None
            if len(data) > limit:
                raise ArchiveError("oversized member", f"{source}:{info.filename}",
                                   f"at most {limit} bytes", "more when decompressed")
            members[info.filename] = data
    return members


def _read_dir_members(path: Path) -> dict[str, bytes]:
    """The known members of an extracted archive folder (other files are ignored)."""
    members: dict[str, bytes] = {}
    for name in KNOWN_MEMBERS:
        child = path / name
        if child.is_symlink():
            raise ArchiveError("symbolic link in archive", str(child), "regular files only")
        if child.is_file():
            limit = MAX_MANIFEST_BYTES if name == MANIFEST_NAME else MAX_MEMBER_BYTES
            try:
                size = child.stat().st_size
                if size > limit:
                    raise ArchiveError("oversized member", str(child), f"at most {limit} bytes",
                                       f"{size} bytes")
                members[name] = child.read_bytes()
            except OSError as exc:
                raise ArchiveError("unreadable member", str(child), "a readable file",
                                   type(exc).__name__) from None
    return members


def _is_positive_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def _check_manifest(manifest: dict, where: str) -> None:
    """Refuse a manifest the loaders could not use (before anything is built from it)."""
    from ptycho.config.config import BACKENDS, ModelConfig, validate_model_config

    backend = manifest.get("backend")
    if backend not in BACKENDS:
        raise ArchiveError("unknown backend", f"{where}:backend", f"one of {', '.join(BACKENDS)}",
                           repr(backend))
    config = manifest.get("model_config")
    if not isinstance(config, dict):
        raise ArchiveError("invalid manifest", f"{where}:model_config",
                           "an object of ModelConfig settings", type(config).__name__)
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(str(key) for key in config if key not in known)
    if unknown:
        raise ArchiveError("unknown model setting", f"{where}:model_config.{unknown[0]}",
                           "the ModelConfig fields of this ptychopinn version (a newer version "
                           "wrote it? upgrade ptychopinn)", repr(unknown[0]))
    try:
        validate_model_config(ModelConfig(**config))
    except InputError as exc:
        field = exc.where.rsplit(".", 1)[-1]
        raise ArchiveError("invalid model setting", f"{where}:model_config.{field}", exc.expected,
                           exc.actual) from None
    if not _is_positive_number(manifest.get("intensity_scale")):
        raise ArchiveError("invalid manifest", f"{where}:intensity_scale", "a finite number > 0",
                           repr(manifest.get("intensity_scale")))
    if not isinstance(manifest.get("history", {}), dict):
        raise ArchiveError("invalid manifest", f"{where}:history", "an object of per-epoch lists",
                           type(manifest.get("history")).__name__)


def read_archive(path: str | Path) -> ModelArchive:
    """Read and verify an archive (file, output folder, or extracted folder)."""
    resolved = resolve_archive_path(path)
    members = _read_dir_members(resolved) if resolved.is_dir() else _read_zip_members(resolved)
    source = str(resolved)
    if MANIFEST_NAME not in members:
        raise ArchiveError("missing manifest", f"{source}:{MANIFEST_NAME}",
                           "an archive written by ptychopinn (upstream PtychoPINN archives are not "
                           "supported: retrain with ptychopinn)", f"members {sorted(members)}")
    try:
        manifest = json.loads(members[MANIFEST_NAME].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveError("invalid manifest", f"{source}:{MANIFEST_NAME}", "valid JSON",
                           str(exc)) from None
    if not isinstance(manifest, dict):
        raise ArchiveError("invalid manifest", f"{source}:{MANIFEST_NAME}", "a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArchiveError("unknown archive format version", f"{source}:{MANIFEST_NAME}",
                           f"format_version {FORMAT_VERSION} (upgrade ptychopinn to read newer archives)",
                           repr(version))
    payload_name = manifest.get("payload")
    files = manifest.get("files")
    if payload_name not in PAYLOAD_NAMES or not isinstance(files, dict):
        raise ArchiveError("invalid manifest", f"{source}:{MANIFEST_NAME}",
                           f"a payload among {', '.join(PAYLOAD_NAMES)} and a files table",
                           repr(payload_name))
    library = PROBES_NAME in files or "training_scans" in manifest
    for name in (PROBE_NAME, payload_name, *((PROBES_NAME,) if library else ())):
        if name not in members:
            raise ArchiveError("missing member", f"{source}:{name}", "every member the manifest lists")
        if _sha256(members[name]) != files.get(name):
            raise ArchiveError("checksum mismatch", f"{source}:{name}",
                               "the sha256 recorded in the manifest (the archive is damaged or was "
                               "modified)")
    _check_manifest(manifest, f"{source}:{MANIFEST_NAME}")
    try:
        probe = np.load(io.BytesIO(members[PROBE_NAME]), allow_pickle=False)
    except Exception as exc:  # ValueError, EOFError, ... from a malformed .npy
        raise ArchiveError("invalid probe", f"{source}:{PROBE_NAME}", "a complex .npy array",
                           f"{type(exc).__name__}: {str(exc)[:200]}") from None
    shape = physics.probe_shape(manifest["model_config"].get("N", 64),
                                manifest["model_config"].get("probe_modes", 1))
    if not isinstance(probe, np.ndarray) or probe.shape != shape or probe.dtype.kind not in "fc" \
            or not np.all(np.isfinite(probe)):
        raise ArchiveError("invalid probe", f"{source}:{PROBE_NAME}",
                           f"a finite complex {shape} array like the model's N"
                           + (" and probe_modes" if len(shape) == 3 else ""),
                           f"{getattr(probe, 'dtype', '?')} array of shape "
                           f"{getattr(probe, 'shape', '?')}")
    probes = _read_probes(members[PROBES_NAME], manifest, f"{source}:{PROBES_NAME}", shape) \
        if library else None
    return ModelArchive(manifest=manifest, probe=probe, payload=members[payload_name],
                        source=source, probes=probes)


def _read_probes(data: bytes, manifest: dict, where: str, shape: tuple[int, ...]) -> np.ndarray:
    """The ``probes.npy`` of a model trained on several scans, checked against the manifest."""
    scans = manifest.get("training_scans")
    if not isinstance(scans, list) or len(scans) < 2 or \
            not all(isinstance(scan, dict) for scan in scans):
        raise ArchiveError("invalid manifest", f"{where.rsplit(':', 1)[0]}:training_scans",
                           "a list of two or more training scan records beside probes.npy",
                           type(scans).__name__)
    try:
        probes = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # ValueError, EOFError, ... from a malformed .npy
        raise ArchiveError("invalid probes", where, "a complex .npy array",
                           f"{type(exc).__name__}: {str(exc)[:200]}") from None
    expected = (len(scans), *shape)
    if not isinstance(probes, np.ndarray) or probes.shape != expected \
            or probes.dtype.kind not in "fc" or not np.all(np.isfinite(probes)):
        raise ArchiveError("invalid probes", where,
                           f"a finite complex {expected} array (one probe per training scan)",
                           f"{getattr(probes, 'dtype', '?')} array of shape "
                           f"{getattr(probes, 'shape', '?')}")
    return probes


def load_trained_model(path: str | Path, backend: str | None = None):
    """Load a trained model from an archive with the backend recorded in its manifest.

    ``backend``, when given, must match the archive's backend.
    """
    from ptycho.backends import load_backend

    archive = read_archive(path)
    made_by = archive.manifest.get("backend")
    if backend is not None and backend != made_by:
        raise ArchiveError("backend mismatch", archive.source,
                           f"an archive of the '{backend}' backend; this one was made by the "
                           f"'{made_by}' backend (load it with --backend {made_by}, or convert it "
                           f"with: ptychopinn convert --to {backend} {path} OUT_DIR)")
    module = load_backend(made_by)
    try:
        model = module.load_model(archive.manifest, archive.payload, archive.probe)
    except ArchiveError as exc:  # name the archive, not just the member
        where = exc.where if exc.where.startswith(archive.source) else \
            f"{archive.source}:{exc.where}"
        raise ArchiveError(exc.what, where, exc.expected, exc.actual) from None
    return model, archive
