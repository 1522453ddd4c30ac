"""Distributed data-parallel training (Lightning DDP, gloo on CPU) through the CLI.

Two ranks with batch 8 see the same global batches as one process with batch 16 (the seeded
per-epoch permutation is sharded over the ranks), gradients are averaged and the logged
metrics reduced, so both runs reach the same losses and weights up to float rounding. Only
global rank 0 writes the archive and history; the other rank exits quietly with status 0.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ptycho.data.npz import write_scan_npz

COMMON = ("--nepochs", "2", "--n_filters_scale", "1", "--n_groups", "80",
          "--validation_fraction", "0.2", "--accelerator", "cpu", "--logger", "none", "--quiet",
          "--seed", "7")


def _history(path) -> dict[str, list[float]]:
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in rows[0]}


def _weights(model_dir) -> dict:
    from ptycho.archive import load_trained_model

    model, _ = load_trained_model(model_dir)
    return {k: v.detach().cpu().numpy() for k, v in model.module.state_dict().items()}


def test_ddp_on_two_cpu_processes_matches_one_process(small_scan, tmp_path, cli):
    scan_file = tmp_path / "scan.npz"
    write_scan_npz(scan_file, small_scan)
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp = cli("train", "--train_data_file", scan_file, "--output_dir", ddp_dir, *COMMON,
              "--batch_size", "8", "--devices", "2", "--strategy", "ddp", timeout=300)
    single = cli("train", "--train_data_file", scan_file, "--output_dir", single_dir, *COMMON,
                 "--batch_size", "16", "--devices", "1", timeout=300)

    # one archive and one history, written by rank 0 only; rank 1 printed nothing
    assert ddp.stdout.count("model written to") == 1
    assert single.stdout.count("model written to") == 1
    assert sorted(p.name for p in ddp_dir.iterdir()) == ["history.csv", "loss_curve.png",
                                                         "wts.h5.zip"]
    ddp_history, single_history = _history(ddp_dir / "history.csv"), _history(single_dir / "history.csv")
    assert ddp_history["epoch"] == single_history["epoch"] == [0, 1]

    # same losses: the Poisson NLL has a large constant offset, so compare against how much
    # the loss moved in training (a rank-local, unreduced metric would be off by > 5 %)
    for key in ("train_loss", "val_loss"):
        moved = abs(single_history["train_loss"][-1] - single_history["train_loss"][0])
        np.testing.assert_allclose(ddp_history[key], single_history[key], rtol=0,
                                   atol=1e-2 * moved, err_msg=key)
    # same weights up to rounding (Adam turns rounding in near-zero gradients into steps of up
    # to the learning rate, so compare the whole parameter vector, not single elements)
    ddp_weights, single_weights = _weights(ddp_dir), _weights(single_dir)
    assert ddp_weights.keys() == single_weights.keys()
    a, b = (np.concatenate([w[k].ravel() for k in sorted(w)]) for w in (ddp_weights, single_weights))
    assert np.linalg.norm(a - b) <= 1e-3 * np.linalg.norm(b)


def test_spawned_strategies_are_refused(small_scan, tmp_path):
    from ptycho import physics
    from ptycho.backends.pytorch import train_model
    from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
    from ptycho.data.grouping import GroupedData
    from ptycho.errors import InputError

    grouped = GroupedData.from_scan(small_scan, 1, n_groups=16)
    config = TrainingConfig(model=ModelConfig(N=64), nepochs=1, output_dir=tmp_path)
    execution = ExecutionConfig(accelerator="cpu", devices=2, strategy="ddp_spawn", logger="none",
                                progress_bar=False)
    with pytest.raises(InputError, match="unsupported strategy"):
        train_model(grouped, None, physics.normalize_probe(small_scan.probe), 1.0, config,
                    execution, tmp_path)


# Loaded at start-up by every process of the run below (the rank Lightning launches included):
# from epoch 1 on, rank 1's training loss is NaN while rank 0's stays finite.
_POISON_RANK_ONE = '''
import os

from ptycho.backends.pytorch.lightning_module import PINNLightning

_loss = PINNLightning._loss


def _poisoned(self, batch):
    loss = _loss(self, batch)
    if os.environ.get("LOCAL_RANK") == "1" and self.current_epoch >= 1:
        return loss * float("nan")
    return loss


PINNLightning._loss = _poisoned
'''


def test_ddp_nan_on_one_rank_stops_every_rank(small_scan, tmp_path):
    """Without an agreed decision rank 1 stopped alone: rank 0 then failed in the gradient
    all-reduce (gloo: "Connection closed by peer", an internal error, no archive; NCCL waits
    for the process-group timeout instead)."""
    import os
    import subprocess
    import sys

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_POISON_RANK_ONE)
    scan_file, out = tmp_path / "scan.npz", tmp_path / "out"
    write_scan_npz(scan_file, small_scan)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])]))
    result = subprocess.run(
        [sys.executable, "-m", "ptycho.cli.main", "train", "--train_data_file", str(scan_file),
         "--output_dir", str(out), *COMMON, "--batch_size", "8", "--devices", "2",
         "--strategy", "ddp"], capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr  # rank 0 reports; rank 1 exits quietly
    assert "non-finite in another process at epoch 1" in errors[0]
    assert "kept the weights of epoch 0" in errors[0] and "Traceback" not in result.stderr
    assert _history(out / "history.csv")["epoch"] == [0]
