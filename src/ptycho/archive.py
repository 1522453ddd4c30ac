"""The model archive ``wts.h5.zip`` (design section 5), shared by both backends.

Members::

    manifest.json   format version, backend, versions, creation time (ISO 8601 UTC), full model
                    and training configuration, N, gridsize, intensity scale, normalisation,
                    history summary, and the sha256 of every other member
    probe.npy       the (trained) normalised probe, complex64 (N, N)
    weights.*       backend payload (torch state dict loaded with weights_only=True, or Keras
                    ``model.weights.h5`` loaded into a model rebuilt from the manifest)

Reading never unpickles or deserialises code. Member names, sizes, types and checksums are
verified, and writes are atomic.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import json
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptycho.errors import ArchiveError
from ptycho.fileio import atomic_path

ARCHIVE_NAME = "wts.h5.zip"
MANIFEST_NAME = "manifest.json"
PROBE_NAME = "probe.npy"
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
                   probe_bytes: bytes) -> dict:
    """Assemble the manifest for a trained model (see the module docstring)."""
    from ptycho import __version__

    training = _jsonable(training_config)
    training.pop("model", None)
    cfg = model.model_config
    return {
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


def write_archive(output_dir: str | Path, model, training_config, *, nphotons: float) -> Path:
    """Write ``<output_dir>/wts.h5.zip`` atomically and return its path."""
    probe_buffer = io.BytesIO()
    np.save(probe_buffer, np.asarray(model.probe, np.complex64), allow_pickle=False)
    probe_bytes = probe_buffer.getvalue()
    payload = model.payload_bytes()
    manifest = build_manifest(model, training_config, nphotons=nphotons, payload=payload,
                              probe_bytes=probe_bytes)
    destination = Path(output_dir) / ARCHIVE_NAME
    with atomic_path(destination) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True))
            archive.writestr(PROBE_NAME, probe_bytes)
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


def _read_zip_members(path: Path) -> dict[str, bytes]:
    source = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError("unreadable archive", source, "a valid wts.h5.zip",
                           type(exc).__name__) from None
    members: dict[str, bytes] = {}
    with archive:
        for info in archive.infolist():
            _check_member_name(info.filename, source)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ArchiveError("symbolic link in archive", f"{source}:{info.filename}",
                                   "regular files only")
            limit = MAX_MANIFEST_BYTES if info.filename == MANIFEST_NAME else MAX_MEMBER_BYTES
            if info.file_size > limit:
                raise ArchiveError("oversized member", f"{source}:{info.filename}",
                                   f"at most {limit} bytes", f"{info.file_size} bytes")
            try:
                with archive.open(info) as handle:
                    data = handle.read(limit + 1)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise ArchiveError("corrupt member", f"{source}:{info.filename}",
                                   "an intact archive", type(exc).__name__) from None
            if len(data) > limit:
                raise ArchiveError("oversized member", f"{source}:{info.filename}",
                                   f"at most {limit} bytes", "more when decompressed")
            members[info.filename] = data
    return members


def _read_dir_members(path: Path) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    for child in path.iterdir():
        if child.is_symlink():
            raise ArchiveError("symbolic link in archive", str(child), "regular files only")
        if child.is_file():
            if child.stat().st_size > MAX_MEMBER_BYTES:
                raise ArchiveError("oversized member", str(child), f"at most {MAX_MEMBER_BYTES} bytes")
            members[child.name] = child.read_bytes()
    return members


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
    for name in (PROBE_NAME, payload_name):
        if name not in members:
            raise ArchiveError("missing member", f"{source}:{name}", "every member the manifest lists")
        if _sha256(members[name]) != files.get(name):
            raise ArchiveError("checksum mismatch", f"{source}:{name}",
                               "the sha256 recorded in the manifest (the archive is damaged or was "
                               "modified)")
    try:
        probe = np.load(io.BytesIO(members[PROBE_NAME]), allow_pickle=False)
    except ValueError as exc:
        raise ArchiveError("invalid probe", f"{source}:{PROBE_NAME}", "a complex .npy array",
                           str(exc)) from None
    return ModelArchive(manifest=manifest, probe=probe, payload=members[payload_name], source=source)


def load_trained_model(path: str | Path, backend: str | None = None):
    """Load a trained model from an archive with the backend recorded in its manifest.

    ``backend``, when given, must match the archive's backend.
    """
    from ptycho.backends import load_backend

    archive = read_archive(path)
    made_by = archive.manifest.get("backend")
    if backend is not None and backend != made_by:
        raise ArchiveError("backend mismatch", archive.source,
                           f"an archive of the '{backend}' backend; this one was made by '{made_by}' "
                           f"(load it with --backend {made_by})")
    module = load_backend(made_by)
    return module.load_model(archive.manifest, archive.payload, archive.probe), archive
