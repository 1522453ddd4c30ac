"""Hostile model archives are refused with one clear ArchiveError and never run code: zip-slip,
absolute and nested paths, symlinks, zip bombs, duplicate members, unknown formats, tampered
checksums, and payloads that would create a marker file if unpickled or deserialised."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import files_in

from ptycho import archive as archive_module
from ptycho.archive import (
    ARCHIVE_NAME,
    MANIFEST_NAME,
    PROBE_NAME,
    load_trained_model,
    read_archive,
    write_archive,
)
from ptycho.cli.main import main
from ptycho.config.config import TrainingConfig
from ptycho.errors import ArchiveError
from ptycho_testing import FakeArchiveModel


def _members(tmp_path: Path, backend: str = "pytorch", payload: bytes = b"weights") -> dict:
    folder = tmp_path / "valid"
    path = write_archive(folder, FakeArchiveModel(payload, backend, n_filters_scale=1),
                         TrainingConfig(), nphotons=1e4)
    with zipfile.ZipFile(path) as source:
        return {name: source.read(name) for name in source.namelist()}


def _with_checksums(members: dict) -> dict:
    """Members whose manifest records the sha256 of the (possibly replaced) payloads."""
    members = dict(members)
    manifest = json.loads(members[MANIFEST_NAME])
    for name in list(manifest["files"]):
        if name in members:
            manifest["files"][name] = hashlib.sha256(members[name]).hexdigest()
    members[MANIFEST_NAME] = json.dumps(manifest).encode()
    return members


def _zip(path: Path, entries) -> Path:
    """Write ``entries`` ((ZipInfo or name, bytes) pairs) as a zip, duplicates allowed."""
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as target:
            for info, data in entries:
                target.writestr(info, data)
    return path


def _refused(path, what: str | tuple) -> ArchiveError:
    with pytest.raises(ArchiveError) as info:
        load_trained_model(path)
    error = info.value
    assert "\n" not in str(error)
    assert error.what in ((what,) if isinstance(what, str) else what), str(error)
    return error


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt", "sub/dir/evil.txt",
                                  "..\\evil.txt", "C:evil.txt", "a/../../evil.txt"])
def test_unsafe_member_paths_are_refused(tmp_path, name):
    members = _members(tmp_path)
    path = _zip(tmp_path / ARCHIVE_NAME, [*members.items(), (name, b"payload")])
    error = _refused(path, ("unsafe member path", "unexpected folder in archive"))
    assert name in error.where
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_symlink_member_is_refused(tmp_path):
    members = _members(tmp_path)
    members.pop("weights.pt")
    path = _zip(tmp_path / ARCHIVE_NAME,
                [*members.items(), (_symlink_info("weights.pt"), b"/etc/passwd")])
    _refused(path, "symbolic link in archive")


def test_symlink_in_an_extracted_archive_folder_is_refused(tmp_path):
    folder = tmp_path / "extracted"
    folder.mkdir()
    for name, data in _members(tmp_path).items():
        if name != "weights.pt":
            (folder / name).write_bytes(data)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"secret")
    os.symlink(secret, folder / "weights.pt")
    _refused(folder, "symbolic link in archive")


@pytest.mark.parametrize("lying_header", [False, True])
def test_zip_bomb_member_is_refused(tmp_path, monkeypatch, lying_header):
    monkeypatch.setattr(archive_module, "MAX_MEMBER_BYTES", 1 << 20)
    bomb = bytes(3 << 20)  # 3 MiB of zeros: ~3 KiB deflated
    members = _with_checksums(dict(_members(tmp_path), **{"weights.pt": bomb}))
    path = _zip(tmp_path / ARCHIVE_NAME, members.items())
    assert path.stat().st_size < 64 * 1024
    if lying_header:  # claim 100 bytes in both headers: the reader must not trust it
        data = bytearray(path.read_bytes())
        for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
            start = 0
            while (start := data.find(signature, start)) >= 0:
                name_len = int.from_bytes(data[start + (26 if signature == b"PK\x03\x04" else 28):
                                               start + (28 if signature == b"PK\x03\x04" else 30)],
                                          "little")
                header = 30 if signature == b"PK\x03\x04" else 46
                if data[start + header:start + header + name_len] == b"weights.pt":
                    data[start + offset:start + offset + 4] = (100).to_bytes(4, "little")
                start += 4
        path.write_bytes(bytes(data))
    _refused(path, ("oversized member", "corrupt member"))


def test_oversized_manifest_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(archive_module, "MAX_MANIFEST_BYTES", 1024)
    members = _members(tmp_path)
    manifest = json.loads(members[MANIFEST_NAME])
    manifest["padding"] = "x" * 4096
    members[MANIFEST_NAME] = json.dumps(manifest).encode()
    _refused(_zip(tmp_path / ARCHIVE_NAME, members.items()), "oversized member")


def test_duplicate_member_is_refused(tmp_path):
    members = _members(tmp_path)
    path = _zip(tmp_path / ARCHIVE_NAME, [*members.items(), ("weights.pt", b"second copy")])
    _refused(path, "duplicate member")


@pytest.mark.parametrize("version", [2, "1", None, 0, 1.5])
def test_unknown_format_version_is_refused(tmp_path, version):
    members = _members(tmp_path)
    manifest = json.loads(members[MANIFEST_NAME])
    if version is None:
        manifest.pop("format_version")
    else:
        manifest["format_version"] = version
    members[MANIFEST_NAME] = json.dumps(manifest).encode()
    error = _refused(_zip(tmp_path / ARCHIVE_NAME, members.items()),
                     "unknown archive format version")
    assert "upgrade ptychopinn" in str(error)


@pytest.mark.parametrize("change, what", [
    ({"backend": "jax"}, "unknown backend"),
    ({"payload": "../weights.pt"}, "invalid manifest"),
    ({"model_config": {"N": 64, "evil": "x"}}, "unknown model setting"),
    ({"model_config": {"N": 100}}, "invalid model setting"),
    ({"model_config": {"N": 64, "probe_modes": 0}}, "invalid model setting"),
    ({"model_config": {"N": 64, "probe_modes": 2}}, "invalid probe"),  # probe.npy is (64, 64)
    ({"intensity_scale": -1}, "invalid manifest"),
    ({"files": []}, "invalid manifest"),
])
def test_malformed_manifest_is_refused(tmp_path, change, what):
    members = _members(tmp_path)
    manifest = dict(json.loads(members[MANIFEST_NAME]), **change)
    members[MANIFEST_NAME] = json.dumps(manifest).encode()
    _refused(_zip(tmp_path / ARCHIVE_NAME, members.items()), what)


@pytest.mark.parametrize("damage, what", [
    ("tampered payload", "checksum mismatch"),
    ("tampered probe", "checksum mismatch"),
    ("missing payload", "missing member"),
    ("missing manifest", "missing manifest"),
    ("manifest not json", "invalid manifest"),
    ("manifest a list", "invalid manifest"),
    ("truncated", ("unreadable archive", "corrupt member")),
    ("not a zip", "unreadable archive"),
    ("pickled probe", "invalid probe"),
    ("wrong probe shape", "invalid probe"),
])
def test_damaged_archive_is_refused(tmp_path, damage, what):
    members = _members(tmp_path)
    if damage == "tampered payload":
        members["weights.pt"] += b"!"
    elif damage == "tampered probe":
        members[PROBE_NAME] = members[PROBE_NAME][:-1] + b"\x01"
    elif damage == "missing payload":
        members.pop("weights.pt")
    elif damage == "missing manifest":
        members.pop(MANIFEST_NAME)
    elif damage == "manifest not json":
        members[MANIFEST_NAME] = b"{not json"
    elif damage == "manifest a list":
        members[MANIFEST_NAME] = b"[1, 2]"
    elif damage == "pickled probe":
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        members = _with_checksums(dict(members, **{PROBE_NAME: buffer.getvalue()}))
    elif damage == "wrong probe shape":
        buffer = io.BytesIO()
        np.save(buffer, np.ones((8, 8), np.complex64))
        members = _with_checksums(dict(members, **{PROBE_NAME: buffer.getvalue()}))
    path = _zip(tmp_path / ARCHIVE_NAME, members.items())
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-200])
    elif damage == "not a zip":
        path.write_bytes(b"\x89HDF\r\n" + bytes(500))
    _refused(path, what)


# ---------------------------------------------------------------------------------------------
# Payloads that would run code
# ---------------------------------------------------------------------------------------------

class _MarkerPayload:
    """Unpickling this runs ``open(marker, 'w')``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _torch_code_payload(marker: Path) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"conv.weight": _MarkerPayload(marker)}, buffer)
    return buffer.getvalue()


def test_torch_payload_that_runs_code_is_refused(tmp_path):
    import torch

    marker = tmp_path / "marker_torch"
    payload = _torch_code_payload(marker)
    members = _with_checksums(_members(tmp_path, "pytorch", payload))  # checksums all match
    path = _zip(tmp_path / "model" / ARCHIVE_NAME, members.items())
    read_archive(path)  # structurally valid: only weights_only stands in the way
    error = _refused(path, "unsafe or invalid weights")
    assert "weights.pt" in error.where and str(path) in error.where
    assert not marker.exists()
    # the payload really is live: a plain unpickling would have run it
    torch.load(io.BytesIO(payload), weights_only=False)
    assert marker.exists()


def test_infer_cli_refuses_a_code_payload_cleanly(tmp_path, capsys):
    from reliability_helpers import write_tiny_scan

    marker = tmp_path / "marker_cli"
    members = _with_checksums(_members(tmp_path, "pytorch", _torch_code_payload(marker)))
    model_dir = tmp_path / "model"
    _zip(model_dir / ARCHIVE_NAME, members.items())
    scan = write_tiny_scan(tmp_path / "scan.npz")
    out = tmp_path / "out"
    assert main(["infer", "--model_path", str(model_dir), "--test_data", str(scan),
                 "--output_dir", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unsafe or invalid weights in "), err
    assert not marker.exists() and files_in(out) == []


def test_keras_payloads_that_run_code_are_refused(tmp_path):
    pytest.importorskip("ptycho.backends.tensorflow")
    import keras

    marker = tmp_path / "marker_keras"

    # a lambda is stored as marshalled bytecode in the .keras config
    touch = eval(f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(touch)(inputs))
    keras_file = tmp_path / "evil.keras"
    model.save(keras_file)
    marker.unlink(missing_ok=True)  # building the model may have run it

    pickle_payload = _torch_code_payload(marker)
    for payload in (keras_file.read_bytes(), pickle_payload):
        members = _with_checksums(_members(tmp_path, "tensorflow", payload))
        path = _zip(tmp_path / "model" / ARCHIVE_NAME, members.items())
        error = _refused(path, "weights do not match the model")
        assert "model.weights.h5" in error.where
        assert not marker.exists()
    # the .keras payload really is live: unsafe deserialisation would run the function
    keras.saving.load_model(keras_file, safe_mode=False)
    assert marker.exists()
