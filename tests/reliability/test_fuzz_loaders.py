"""Fuzzing the loaders: random NPZ contents and random or damaged archive bytes must give either
a result or a clean InputError/ArchiveError (never another exception, never a pickle load)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ptycho.archive import (
    ARCHIVE_NAME,
    MANIFEST_NAME,
    PROBE_NAME,
    load_trained_model,
    read_archive,
)
from ptycho.data.npz import read_scan_npz
from ptycho.errors import ArchiveError, InputError

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

M, N = 4, 8
KEYS = ("xcoords", "ycoords", "diff3d", "diffraction", "probeGuess", "objectGuess",
        "xcoords_start", "ycoords_start", "scan_index", "bad_pixels", "measurement", "other")
DTYPES = (np.float32, np.float64, np.int16, np.uint16, np.int64, np.complex64, np.bool_,
          np.dtype("<U4"), np.dtype("S3"), np.float16)


def _valid_scan() -> dict:
    rng = np.random.default_rng(0)
    return {
        "xcoords": np.array([10.0, 14.0, 18.0, 22.0]),
        "ycoords": np.array([10.0, 12.0, 16.0, 20.0]),
        "diff3d": rng.random((M, N, N)).astype(np.float32),
        "probeGuess": np.ones((N, N), np.complex64),
        "objectGuess": np.ones((40, 40), np.complex64),
    }


def _shapes():
    special = st.sampled_from([(M,), (M, N, N), (N, N), (N, N, M), (M, N, N, 1), (1, N, N),
                               (0,), (), (M + 1,), (M, N, N - 1), (40, 40), (2, N, N)])
    return st.one_of(special, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))


@st.composite
def _arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(_shapes())
    if dtype.kind in ("U", "S"):
        return np.full(shape, draw(st.sampled_from(["ab", "intensity", "amplitude", ""])), dtype)
    return draw(hnp.arrays(dtype, shape))  # NaN, Inf, negatives and extremes included


@st.composite
def npz_contents(draw):
    arrays = _valid_scan() if draw(st.booleans()) else {}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True)):
        if draw(st.integers(0, 3)) == 0:
            arrays.pop(key, None)
        elif draw(st.integers(0, 9)) == 0:  # an object array: written as a pickle
            value = np.empty(2, dtype=object)
            value[0], value[1] = np.zeros(2), "x"
            arrays[key] = value
        else:
            arrays[key] = draw(_arrays())
    return arrays


@st.composite
def damage(draw):
    kind = draw(st.sampled_from(["none", "none", "truncate", "flip", "garbage"]))
    return kind, draw(st.integers(0, 10 ** 6)), draw(st.integers(0, 255))


def _damaged(data: bytes, how) -> bytes:
    kind, position, value = how
    if kind == "none" or not data:
        return data
    if kind == "truncate":
        return data[:position % len(data)]
    if kind == "flip":
        buffer = bytearray(data)
        buffer[position % len(buffer)] ^= value or 1
        return bytes(buffer)
    return bytes([value]) * (position % 2000)


@FUZZ
@given(arrays=npz_contents(), how=damage(), lazy=st.sampled_from([False, None, True]))
def test_random_npz_contents_load_or_fail_cleanly(tmp_path_factory, arrays, how, lazy):
    folder = tmp_path_factory.mktemp("fuzz_npz", numbered=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = folder / "scan.npz"
    path.write_bytes(_damaged(buffer.getvalue(), how))
    try:
        scan = read_scan_npz(path, lazy=lazy)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert scan.diffraction.shape[0] == len(scan.xcoords) == len(scan.ycoords)
    assert np.isfinite(np.asarray(scan.diffraction[:])).all()


# ---------------------------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------------------------

class _Blob(bytes):
    """Archive bytes with a short repr (hypothesis prints the arguments of failing examples)."""

    def __repr__(self) -> str:
        return f"<{len(self)} archive bytes>"


@pytest.fixture(scope="module")
def valid_archive(tmp_path_factory) -> bytes:
    """A real (untrained, tiny) torch model archive."""
    from ptycho import physics
    from ptycho.archive import write_archive
    from ptycho.backends.pytorch.model import PtychoPINN
    from ptycho.backends.pytorch.trained_model import TorchTrainedModel
    from ptycho.config.config import ModelConfig, TrainingConfig

    config = ModelConfig(N=64, n_filters_scale=1)
    model = TorchTrainedModel(PtychoPINN(config, physics.default_probe(64), 10.0))
    folder = tmp_path_factory.mktemp("valid_archive")
    return _Blob(write_archive(folder, model, TrainingConfig(model=config),
                               nphotons=1e5).read_bytes())


def _load(path):
    try:
        read_archive(path)
        model, _ = load_trained_model(path)
    except ArchiveError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    except InputError as exc:  # e.g. a path problem (never a bare exception)
        assert str(exc) and "\n" not in str(exc)
        return None
    return model


@FUZZ
@given(data=st.binary(max_size=4000))
def test_random_archive_bytes_fail_cleanly(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz_bytes", numbered=True) / ARCHIVE_NAME
    path.write_bytes(data)
    assert _load(path) is None


@FUZZ
@given(how=st.lists(damage(), min_size=1, max_size=3), near_end=st.booleans())
def test_damaged_archives_load_or_fail_cleanly(tmp_path_factory, valid_archive, how, near_end):
    data = bytes(valid_archive)
    for kind, position, value in how:  # mostly the headers: manifest, probe, central directory
        position = position % 4096 if not near_end else len(data) - 1 - position % 512
        data = _damaged(data, (kind, position, value))
    path = tmp_path_factory.mktemp("fuzz_archive", numbered=True) / ARCHIVE_NAME
    path.write_bytes(data)
    _load(path)


_MANIFEST_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=False),
              st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=6), children, max_size=3)),
    max_leaves=6)


@settings(FUZZ, max_examples=40)
@given(key=st.sampled_from(["format_version", "backend", "payload", "files", "model_config",
                            "intensity_scale", "N", "gridsize", "history", "nphotons",
                            "model_config.N", "model_config.gridsize", "model_config.extra",
                            "model_config.amp_activation", "model_config.probe_scale"]),
       value=_MANIFEST_VALUES, drop=st.booleans())
def test_random_manifest_fields_load_or_fail_cleanly(tmp_path_factory, valid_archive, key, value,
                                                     drop):
    with zipfile.ZipFile(io.BytesIO(valid_archive)) as source:
        members = {name: source.read(name) for name in source.namelist()}
    manifest = json.loads(members[MANIFEST_NAME])
    owner, name = (manifest["model_config"], key.split(".")[1]) if "." in key else (manifest, key)
    if drop:
        owner.pop(name, None)
    else:
        owner[name] = value
    members[MANIFEST_NAME] = json.dumps(manifest).encode()
    path = tmp_path_factory.mktemp("fuzz_manifest", numbered=True) / ARCHIVE_NAME
    with zipfile.ZipFile(path, "w") as target:
        for member, content in members.items():
            target.writestr(member, content)
    assert PROBE_NAME in members
    _load(path)
