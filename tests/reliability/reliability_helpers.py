"""Helpers shared by the reliability tests (a plain module: no second ``conftest.py``)."""

from __future__ import annotations

from pathlib import Path

from ptycho_testing import make_test_scan


def tiny_train_args(scan: Path, out: Path, backend: str = "pytorch", nepochs: int = 2,
                    *extra: str) -> list[str]:
    """``ptychopinn train`` arguments for a seconds-long run (25 positions, 5 steps/epoch)."""
    return ["train", "--train_data_file", str(scan), "--output_dir", str(out),
            "--nepochs", str(nepochs), "--n_filters_scale", "1", "--batch_size", "4",
            "--validation_fraction", "0.2", "--backend", backend, "--logger", "none",
            "--accelerator", "cpu", "--quiet", *extra]


def write_tiny_scan(path: Path) -> Path:
    """A 25-position N=64 simulated scan NPZ at ``path``."""
    from ptycho.data.npz import write_scan_npz

    write_scan_npz(path, make_test_scan(n_side=5))
    return path


def files_in(folder: Path) -> list[str]:
    """Names of every file below ``folder`` (empty when it does not exist)."""
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
