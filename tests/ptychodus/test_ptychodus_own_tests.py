"""ptychodus 1.7.0's own PtychoPINN-related tests, run against our installed package.

The test files are vendored unmodified in ``upstream_1_7_0/`` (see its README for provenance
and license). They run in a separate pytest process rooted in that folder, so that neither our
conftest nor our pytest options apply to them. The parent-config builder test turns a config
build error into a *skip*, so its outcome is read from a JUnit report and required to be a
pass; our own explicit builder checks follow.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("ptychodus",
                    reason="ptychodus is not installed (pip install 'ptychopinn[ptychodus]')")

UPSTREAM = Path(__file__).parent / "upstream_1_7_0"
UPSTREAM_FILES = (
    "test_parent_config_builders.py",
    "test_no_gpu_context.py",
    "test_ptychopinn_subprocess.py",
    "test_io.py",
)
BUILDER_TEST = "test_parent_config_builders_acquire_no_gpu_context[ptychopinn]"


@pytest.fixture(scope="module")
def upstream_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ptychodus_own_tests")
    ini = tmp / "pytest.ini"
    ini.write_text("[pytest]\n")
    junit = tmp / "junit.xml"
    env = dict(os.environ, PTYCHOPINN_RUN_UPSTREAM_PTYCHODUS_TESTS="1",
               PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
           "-c", str(ini), "--rootdir", str(UPSTREAM), f"--junitxml={junit}",
           *[str(UPSTREAM / name) for name in UPSTREAM_FILES]]
    proc = subprocess.run(cmd, check=False, cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=600)
    cases = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
        cases[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return proc, cases


def test_upstream_ptychopinn_tests_pass(upstream_run):
    proc, cases = upstream_run
    output = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, output
    assert cases, output
    bad = {name: outcome for name, outcome in cases.items() if outcome in ("failure", "error")}
    assert not bad, output
    for name in UPSTREAM_FILES:
        module = name.removesuffix(".py")
        assert any(case.startswith(module) for case in cases), f"no test ran from {name}"


def test_upstream_builder_test_really_ran(upstream_run):
    """A config-schema mismatch would make ptychodus *skip* this test; require a pass."""
    _, cases = upstream_run
    matches = {name: outcome for name, outcome in cases.items() if name.endswith(BUILDER_TEST)}
    assert matches, f"{BUILDER_TEST} did not run; cases: {sorted(cases)}"
    assert set(matches.values()) == {"passed"}, matches


# ------------------------------------------------------------------------------------------
# Our own explicit checks of ptychodus's parent-side config builders
# ------------------------------------------------------------------------------------------


def _settings():
    from ptychodus.api.settings import SettingsRegistry
    from ptychodus.model.ptychopinn.settings import (
        PtychoPINNInferenceSettings,
        PtychoPINNModelSettings,
        PtychoPINNTrainingSettings,
    )

    registry = SettingsRegistry()
    return (PtychoPINNModelSettings(registry), PtychoPINNTrainingSettings(registry),
            PtychoPINNInferenceSettings(registry))


@pytest.mark.parametrize("name", ["PINN", "Supervised"])
def test_ptychodus_builds_our_training_config(name):
    from ptychodus.model.ptychopinn.reconstructor import _build_training_config

    from ptycho.config.config import ModelConfig, TrainingConfig, validate_training_config

    model_settings, training_settings, _ = _settings()
    model_settings.gridsize.set_value(2)
    training_settings.nepochs.set_value(3)
    config = _build_training_config(model_settings, training_settings, name)
    assert type(config) is TrainingConfig
    assert type(config.model) is ModelConfig
    assert config.model.N == 0  # unknown until the child reads the data
    assert config.model.model_type == name.lower()
    assert config.model.gridsize == 2 and config.nepochs == 3
    assert config.output_dir == Path() and config.train_data_file == Path()
    assert config.backend == "pytorch"  # ptychodus never sets it: our default
    validate_training_config(config, require_n=False)

    clone = pickle.loads(pickle.dumps(config))
    assert clone == config
    clone.model.N = 64  # what the child does (a frozen ModelConfig would raise here)
    validate_training_config(clone)


def test_ptychodus_builds_our_inference_config():
    from ptychodus.model.ptychopinn.reconstructor import _build_inference_config

    from ptycho.config.config import InferenceConfig, ModelConfig, validate_inference_config

    model_settings, _, _ = _settings()
    config = _build_inference_config(model_settings, "PINN", 64, is_developer_mode_enabled=True)
    assert type(config) is InferenceConfig
    assert type(config.model) is ModelConfig
    assert config.model.N == 64 and config.model.gridsize == 1 and config.debug is True
    assert config.output_dir == Path() and config.model_path == Path()
    validate_inference_config(config)
    assert pickle.loads(pickle.dumps(config)) == config


def test_building_configs_imports_no_backend():
    """The parent (GUI) process must not import torch, lightning or tensorflow."""
    code = (
        "import sys\n"
        "from ptychodus.api.settings import SettingsRegistry\n"
        "from ptychodus.model.ptychopinn.reconstructor import _build_inference_config, "
        "_build_training_config\n"
        "from ptychodus.model.ptychopinn.settings import PtychoPINNModelSettings, "
        "PtychoPINNTrainingSettings\n"
        "r = SettingsRegistry()\n"
        "m, t = PtychoPINNModelSettings(r), PtychoPINNTrainingSettings(r)\n"
        "_build_inference_config(m, 'PINN', 64, is_developer_mode_enabled=False)\n"
        "_build_training_config(m, t, 'PINN')\n"
        "heavy = [n for n in ('torch', 'lightning', 'tensorflow', 'keras') if n in sys.modules]\n"
        "assert 'ptycho.config.config' in sys.modules\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HEAVY []" in proc.stdout, proc.stdout
