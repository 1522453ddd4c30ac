"""Shared fixtures: small synthetic scans generated on the fly (no data files in the repo)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ptycho_testing import make_test_scan, run_cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def small_scan():
    """100-position N=64 simulated scan (session-scoped; do not mutate)."""
    return make_test_scan()


@pytest.fixture
def cli():
    """The :func:`run_cli` helper as a fixture."""
    return run_cli


@pytest.fixture(scope="module")
def simulated_scan_file(tmp_path_factory):
    """A small simulated scan written by ``ptychopinn simulate`` (module-scoped)."""
    path = tmp_path_factory.mktemp("scan") / "scan.npz"
    run_cli("simulate", "--object", "grf", "--scan", "raster", "--step", "6", "--N", "64",
            "--object-size", "124", "--nphotons", "1e5", "--seed", "3", "--out", path)
    return path
