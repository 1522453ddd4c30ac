"""``simulate --realistic`` -> ``train`` (--probe-modes 2, reading flags) -> ``infer`` on the
CXI, scored against the truth the file carries."""

from __future__ import annotations

import json
import re

import numpy as np

from ptycho.cli.main import main


def test_simulate_realistic_train_infer(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--realistic", "--N", "64", "--object-size", "96", "--positions",
                 "16", "--step", "6", "--nphotons", "1e5", "--seed", "2", "--out",
                 "real.cxi"]) == 0
    line = capsys.readouterr().out
    assert "128x128 uint32" in line and "80.0 % / 20.0 %" in line
    reading = re.search(r"read with (.+)$", line.strip()).group(1).split()
    assert reading[:4] == ["--crop", "64", "--detector-centre", "58,72"]
    assert reading[-2:] == ["--probe-modes", "2"]

    assert main(["train", "--train_data_file", "real.cxi", "--output_dir", "model",
                 "--nepochs", "1", "--n_filters_scale", "1", "--batch_size", "8", "--logger",
                 "none", "--accelerator", "cpu", "--quiet", *reading]) == 0
    flags = reading[:-2]  # the archive knows its modes
    assert main(["infer", "--model_path", "model", "--test_data", "real.cxi", "--output_dir",
                 "recon", "--quiet", *flags]) == 0
    result = np.load(tmp_path / "recon" / "reconstruction.npz")
    assert np.all(np.isfinite(result["object"]))
    metrics = json.loads((tmp_path / "recon" / "metrics.json").read_text())
    assert "amplitude" in json.dumps(metrics)
