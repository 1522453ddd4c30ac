"""SIGINT/SIGTERM during training: stop after the step, save best weights and a resumable
checkpoint, exit 130/143 naming --resume; ``train --resume`` continues (both backends)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import files_in, tiny_train_args, write_tiny_scan

from ptycho import runcontrol
from ptycho.archive import load_trained_model, read_archive
from ptycho.cli.main import main
from ptycho.runcontrol import Checkpoint
from ptycho.workflows.resume import RESUME_NAME, read_checkpoint, write_checkpoint

STEPS_PER_EPOCH = 5  # 25 positions, 20 for training, batch 4
SIGNAL_AT_STEP = STEPS_PER_EPOCH + 2  # during epoch 1, after its second step


def _signal_at(monkeypatch, backend: str, signum: int, at_step: int) -> dict:
    """Deliver ``signum`` to this process during optimiser step ``at_step`` (1-based)."""
    count = {"steps": 0}

    def hit():
        count["steps"] += 1
        if count["steps"] == at_step:
            os.kill(os.getpid(), signum)

    if backend == "pytorch":
        from ptycho.backends.pytorch.lightning_module import PINNLightning

        original = PINNLightning.training_step

        def training_step(self, batch, batch_idx):
            loss = original(self, batch, batch_idx)
            hit()
            return loss

        monkeypatch.setattr(PINNLightning, "training_step", training_step)
    else:
        pytest.importorskip("ptycho.backends.tensorflow")
        from ptycho.backends.tensorflow.training import EpochControl

        monkeypatch.setattr(EpochControl, "on_train_batch_begin",
                            lambda self, batch, logs=None: hit(), raising=False)
    return count


def _optimizer_steps(checkpoint: Checkpoint) -> int:
    if checkpoint.backend == "pytorch":
        import torch

        state = torch.load(io.BytesIO(checkpoint.state), weights_only=True)
        return int(state["optimizer"]["state"][0]["step"])
    with np.load(io.BytesIO(checkpoint.state), allow_pickle=False) as npz:
        return int(npz["optimizer_0000"])  # Keras Adam: 'iteration' comes first


@pytest.mark.parametrize("backend, signum", [("pytorch", signal.SIGINT),
                                             ("tensorflow", signal.SIGTERM)])
def test_interrupt_then_resume(tmp_path, capsys, monkeypatch, backend, signum):
    scan = write_tiny_scan(tmp_path / "scan.npz")
    out = tmp_path / "out"
    _signal_at(monkeypatch, backend, signum, SIGNAL_AT_STEP)
    previous_handlers = {s: signal.getsignal(s) for s in runcontrol.SIGNALS}

    code = main(tiny_train_args(scan, out, backend, 2))

    assert code == 128 + signum
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("interrupted: ")]
    assert len(lines) == 1 and f"--resume {out}" in lines[0]
    assert runcontrol.signal_name(signum) in lines[0] and "Traceback" not in err
    assert {s: signal.getsignal(s) for s in runcontrol.SIGNALS} == previous_handlers
    # best weights so far: a valid archive of epoch 0
    model, archive = load_trained_model(out)
    assert archive.manifest["history"]["epoch"] == [0]
    assert model.predict  # loads through the safe path
    # the resumable checkpoint: one completed epoch, optimiser state after the 7th step
    checkpoint = read_checkpoint(out)
    assert checkpoint.backend == backend and checkpoint.epochs_completed == 1
    assert _optimizer_steps(checkpoint) == SIGNAL_AT_STEP
    first_loss = checkpoint.progress["history"]["train_loss"][0]

    monkeypatch.undo()  # no more signals
    code = main(["train", "--resume", str(out), "--logger", "none", "--quiet"])
    assert code == 0, capsys.readouterr().err
    history = read_archive(out).manifest["history"]
    assert history["epoch"] == [0, 1]  # up to the saved --nepochs
    assert history["train_loss"][0] == pytest.approx(first_loss)  # history kept, not retrained
    assert history["train_loss"][1] < first_loss  # continues from the trained weights
    assert len(history["learning_rate"]) == 2
    assert RESUME_NAME not in files_in(out) and not any(n.startswith("resume.")
                                                        for n in files_in(out))
    assert not any(name.endswith(".tmp") for name in files_in(out))


@pytest.mark.parametrize("backend, signum", [("pytorch", signal.SIGTERM),
                                             ("tensorflow", signal.SIGINT)])
def test_resume_continues_the_cosine_schedule(tmp_path, capsys, monkeypatch, backend, signum):
    """--lr_schedule cosine: the resumed run goes on from the saved update count (7, during
    epoch 1) instead of restarting the warm-up, in both backends the same; a larger --nepochs
    stretches the decay over the new total."""
    from ptycho.backends.schedule import CosineSchedule
    from ptycho.config.config import TrainingConfig

    scan = write_tiny_scan(tmp_path / "scan.npz")
    out = tmp_path / "out"
    recipe = ["--lr_schedule", "cosine", "--lr_min", "1e-4", "--grad_clip_norm", "1"]
    _signal_at(monkeypatch, backend, signum, SIGNAL_AT_STEP)
    assert main(tiny_train_args(scan, out, backend, 3, *recipe)) == 128 + signum
    checkpoint = read_checkpoint(out)
    assert checkpoint.epochs_completed == 1 and _optimizer_steps(checkpoint) == SIGNAL_AT_STEP
    if backend == "pytorch":
        import torch

        state = torch.load(io.BytesIO(checkpoint.state), weights_only=True)
        assert state["scheduler"]["last_epoch"] == SIGNAL_AT_STEP

    monkeypatch.undo()
    capsys.readouterr()
    code = main(["train", "--resume", str(out), "--nepochs", "4", "--logger", "none", "--quiet"])
    assert code == 0, capsys.readouterr().err
    manifest = read_archive(out).manifest
    first, longer = (CosineSchedule.from_config(
        TrainingConfig(lr_schedule="cosine", lr_min=1e-4, nepochs=n), STEPS_PER_EPOCH)
        for n in (3, 4))
    # epoch 0 ended after 5 updates; the resumed run repeats epoch 1 from 7 updates on
    expected = [1e-3 * first.factor(STEPS_PER_EPOCH)] + [
        1e-3 * longer.factor(SIGNAL_AT_STEP + k * STEPS_PER_EPOCH) for k in (1, 2, 3)]
    assert manifest["history"]["learning_rate"] == pytest.approx(expected, rel=1e-6)
    assert manifest["history"]["learning_rate"][-1] == pytest.approx(1e-4)
    training = manifest["training_config"]  # the recipe is recorded in the archive
    assert (training["lr_schedule"], training["lr_min"], training["grad_clip_norm"],
            training["lr_warmup_epochs"]) == ("cosine", 1e-4, 1.0, 1.0)


def test_interrupt_then_resume_with_two_scans(tmp_path, capsys, monkeypatch):
    """Several training scans: the checkpoint keeps the file list and a fingerprint of each
    scan; --resume continues on both, and refuses when a scan changed."""
    import math

    from ptycho.data.npz import write_scan_npz
    from ptycho.data.splitting import split_indices
    from ptycho_testing import make_library_scans

    a, b = make_library_scans(tmp_path)
    out = tmp_path / "out"
    train_rows, _ = split_indices(25 + 36, 0.2, 42)
    steps_per_epoch = math.ceil(len(train_rows) / 4)
    _signal_at(monkeypatch, "pytorch", signal.SIGINT, steps_per_epoch + 2)
    argv = tiny_train_args(Path(a.source), out, "pytorch", 2)
    argv[argv.index(a.source) + 1:argv.index(a.source) + 1] = [b.source]  # two files
    assert main(argv) == 130
    checkpoint = read_checkpoint(out)
    assert checkpoint.epochs_completed == 1
    assert checkpoint.config["train_data_file"] == [a.source, b.source]
    assert [scan["n_positions"] for scan in checkpoint.data["scans"]] == [25, 36]
    monkeypatch.undo()
    capsys.readouterr()

    write_scan_npz(b.source, b.subset(np.arange(30)))  # b changed: refused, nothing written
    before = files_in(out)
    assert main(["train", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "training data changed" in err and "n_positions = 36" in err
    assert files_in(out) == before
    write_scan_npz(b.source, b)
    assert main(["train", "--resume", str(out), "--logger", "none", "--quiet"]) == 0
    manifest = read_archive(out).manifest
    assert manifest["history"]["epoch"] == [0, 1]
    assert [scan["file"] for scan in manifest["training_scans"]] == [a.source, b.source]
    assert RESUME_NAME not in files_in(out)


def _fake_checkpoint(out: Path, scan: Path, **config_changes) -> None:
    from ptycho.config.config import ModelConfig, TrainingConfig

    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1), train_data_file=scan,
                            nepochs=3, batch_size=4, validation_fraction=0.2, output_dir=out,
                            **config_changes)
    progress = {"epochs_completed": 2, "history": {"epoch": [0, 1]}}
    write_checkpoint(out, Checkpoint("pytorch", b"state bytes", progress), config,
                     {"n_positions": 25, "N": 64})


@pytest.mark.parametrize("argv, what, where", [
    (["--nepochs", "2"], "nothing to resume", "--nepochs"),
    (["--nepochs", "5", "--learning_rate", "0.01"], "option differs from the interrupted run",
     "--learning_rate"),
    (["--nepochs", "5", "--gridsize", "2"], "option differs from the interrupted run",
     "--gridsize"),
    (["--nepochs", "5", "--train_data_file", "scan.npz", "other.npz"],
     "option differs from the interrupted run", "--train_data_file"),
])
def test_resume_refuses_changed_options(tmp_path, capsys, argv, what, where):
    out = tmp_path / "out"
    _fake_checkpoint(out, tmp_path / "scan.npz")
    before = files_in(out)
    assert main(["train", "--resume", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {what} in {where}"), err
    assert files_in(out) == before


def test_resume_accepts_repeated_options(tmp_path):
    from ptycho.cli.main import build_parser
    from ptycho.cli.train_cmd import resume_configs_from_args

    out = tmp_path / "out"
    scan = tmp_path / "scan.npz"
    _fake_checkpoint(out, scan)
    args = build_parser().parse_args(tiny_train_args(scan, out, "pytorch", 6)
                                     + ["--resume", str(out)])
    config, _, checkpoint = resume_configs_from_args(args)
    assert config.nepochs == 6 and config.batch_size == 4 and config.model.N == 64
    assert checkpoint.epochs_completed == 2 and config.output_dir == out


@pytest.mark.parametrize("damage, what", [
    ("none", "no resumable checkpoint"),
    ("state", "checksum mismatch"),
    ("missing_state", "missing checkpoint state"),
    ("json", "unreadable checkpoint"),
    ("version", "unknown checkpoint format version"),
])
def test_damaged_checkpoint_is_refused(tmp_path, capsys, damage, what):
    out = tmp_path / "out"
    _fake_checkpoint(out, tmp_path / "scan.npz")
    if damage == "none":
        (out / RESUME_NAME).unlink()
    elif damage == "state":
        (out / "resume.pt").write_bytes(b"other bytes")
    elif damage == "missing_state":
        (out / "resume.pt").unlink()
    elif damage == "json":
        (out / RESUME_NAME).write_text("{not json")
    else:
        document = json.loads((out / RESUME_NAME).read_text())
        document["format_version"] = 99
        (out / RESUME_NAME).write_text(json.dumps(document))
    assert main(["train", "--resume", str(out), "--nepochs", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {what} in "), err


def test_resume_on_changed_data_is_refused(tmp_path, capsys):
    scan = write_tiny_scan(tmp_path / "scan.npz")
    out = tmp_path / "out"
    _fake_checkpoint(out, scan)
    document = json.loads((out / RESUME_NAME).read_text())
    document["data"]["n_positions"] = 30
    (out / RESUME_NAME).write_text(json.dumps(document))
    assert main(["train", "--resume", str(out), "--nepochs", "5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training data changed" in err[0] and "n_positions" in err[0]


_SUBPROCESS = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ptycho.backends.pytorch.lightning_module import PINNLightning
    from ptycho.cli.main import main

    original = PINNLightning.training_step
    started = Path(sys.argv[1])

    def training_step(self, batch, batch_idx):
        started.touch()
        time.sleep(0.05)  # slow enough to be signalled mid-training
        return original(self, batch, batch_idx)

    PINNLightning.training_step = training_step
    sys.exit(main(sys.argv[2:]))
""")


def test_sigterm_to_a_real_training_process(tmp_path):
    scan = write_tiny_scan(tmp_path / "scan.npz")
    out = tmp_path / "out"
    started = tmp_path / "started"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-c", _SUBPROCESS, str(started), *tiny_train_args(scan, out, "pytorch",
                                                                           50)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        while not started.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err
    lines = [line for line in err.splitlines() if line.startswith("interrupted: ")]
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "--resume" in lines[0], err
    assert "Traceback" not in err
    read_archive(out)  # the best weights so far form a valid archive
    assert read_checkpoint(out).backend == "pytorch"
