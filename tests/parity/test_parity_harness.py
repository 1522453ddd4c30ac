"""``ptychopinn parity``: report folders, logs, verdict, report contents, and a small real run
(both backends train 1 epoch and infer in subprocesses)."""

import datetime as dt
import json
import re
import sys

import pytest

from ptycho.cli.main import main
from ptycho.parity import harness, report
from ptycho.parity.checks import CheckResult

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _strict_json(path):
    def reject(constant):
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_report_folders_are_timestamped_and_never_reused(tmp_path):
    moment = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    first = harness.make_report_dir(tmp_path / "reports", moment)
    (first / "keep.txt").write_text("earlier report")
    second = harness.make_report_dir(tmp_path / "reports", moment)
    third = harness.make_report_dir(tmp_path / "reports", moment)
    assert [p.name for p in (first, second, third)] == [
        "20250102T030405Z", "20250102T030405Z-2", "20250102T030405Z-3"]
    assert (first / "keep.txt").read_text() == "earlier report"
    assert ISO_UTC.match(harness.utc_iso(moment)) and harness.utc_iso(moment) == \
        "2025-01-02T03:04:05Z"


def test_run_logged_tees_stdout_and_stderr_also_on_failure(tmp_path):
    code = ("import sys; print('to stdout'); print('to stderr', file=sys.stderr); "
            "print('error: bad input in x: y', file=sys.stderr); sys.exit(3)")
    with open(tmp_path / "run.log", "w") as handle:
        step = harness.run_logged("train", [sys.executable, "-c", code], handle,
                                  env=harness._child_env(1), echo=False)
    text = (tmp_path / "run.log").read_text()
    assert "to stdout" in text and "to stderr" in text and "exit status 3" in text
    assert step.exit_status == 3 and not step.ok and step.error == "error: bad input in x: y"
    assert ISO_UTC.match(step.started) and ISO_UTC.match(step.finished)

    with open(tmp_path / "slow.log", "w") as handle:
        step = harness.run_logged("infer", [sys.executable, "-c", "import time; time.sleep(30)"],
                                  handle, env=harness._child_env(1), echo=False, timeout_s=1)
    assert step.timed_out and not step.ok and "timed out" in step.error


def _settings(tmp_path, checks="none", **kw):
    data = tmp_path / "scan.npz"
    data.write_bytes(b"")
    return harness.HarnessSettings(data=data, out=tmp_path / "reports", checks=checks,
                                   echo=False, **kw)


def _fake_step(name, ok=True):
    return harness.StepResult(name=name, command=["python", "-m", "ptycho.cli.main", name],
                              started="2025-01-01T00:00:00Z", finished="2025-01-01T00:00:01Z",
                              wall_s=1.0, exit_status=0 if ok else 1,
                              error=None if ok else "internal error: boom")


def _run(backend, psnr=(20.0, 15.0), ok=True):
    run = harness.BackendRun(backend=backend, log_file=f"{backend}.log",
                             steps=[_fake_step("train"), _fake_step("infer", ok)])
    run.losses = {"epochs": 2, "final_train_loss": -10.0, "final_val_loss": -9.0}
    run.metrics = {"amplitude": {"psnr_db": psnr[0], "ssim": 0.5},
                   "phase": {"psnr_db": psnr[1], "ssim": None}}
    if not ok:
        run.error = "infer failed: internal error: boom"
    return run


def _build(tmp_path, settings, runs, rows=()):
    folder = harness.make_report_dir(settings.out)
    built = report.build_report(
        settings=settings, report_dir=folder, started="2025-01-01T00:00:00Z",
        finished="2025-01-01T00:01:00Z", wall_s=60.0, environment=harness.collect_environment(),
        runs=runs, rows=list(rows), checks_seconds=0.5, checks_error=None, init_dir=None,
        init_error=None)
    report.write_report(folder, built)
    return folder, built


def test_verdict_rules(tmp_path):
    good = [_run("tensorflow"), _run("pytorch", psnr=(20.4, 15.3))]
    _, built = _build(tmp_path, _settings(tmp_path), good)
    assert built["verdict"]["passed"], built["verdict"]
    assert built["comparison"]["psnr_db"]["amplitude"]["difference"] == pytest.approx(0.4)

    far = [_run("tensorflow"), _run("pytorch", psnr=(18.0, 15.3))]
    _, built = _build(tmp_path, _settings(tmp_path), far)
    assert not built["verdict"]["passed"] and "PSNR difference" in built["verdict"]["failures"][0]

    failed = [_run("tensorflow"), _run("pytorch", ok=False)]
    _, built = _build(tmp_path, _settings(tmp_path), failed)
    assert any("internal error: boom" in f for f in built["verdict"]["failures"])

    bad_row = CheckResult("model", "predicted amplitude s*A", "pytorch vs tensorflow", "float32",
                          1.0, 2e-5, 1e-5, "N=64")
    _, built = _build(tmp_path, _settings(tmp_path), good, [bad_row])
    assert any("2e-05 > 1e-05" in f for f in built["verdict"]["failures"])

    missing = harness.BackendRun(backend="tensorflow", log_file="tf_baseline.log",
                                 available=False, error="BackendUnavailableError: no keras")
    missing_row = CheckResult("component", "component checks", "tensorflow", "-", float("nan"),
                              float("nan"), float("nan"), error="no keras",
                              missing_backend="tensorflow")
    for allow in (False, True):
        _, built = _build(tmp_path, _settings(tmp_path, allow_missing_backend=allow),
                          [missing, _run("pytorch")], [missing_row])
        assert built["verdict"]["passed"] is allow, built["verdict"]
        text = " ".join(built["verdict"]["failures"] + built["verdict"]["notes"])
        assert "BackendUnavailableError: no keras" in text


def test_report_has_every_section_and_strict_json(tmp_path):
    row = CheckResult("component", "far field", "pytorch vs reference", "float64", 1e-16, 2e-16,
                      1e-6, "N=16")
    folder, _ = _build(tmp_path, _settings(tmp_path, checks="quick"),
                           [_run("tensorflow"), _run("pytorch")], [row])
    summary = (folder / "parity_summary.md").read_text()
    for section in report.SUMMARY_SECTIONS:
        assert section in summary, section
    assert "| far field | pytorch vs reference | float64 | N=16 | 1e-16 | 2e-16 | 1e-06 | ok |" \
        in summary
    data = _strict_json(folder / "parity.json")
    assert data["backends"]["tensorflow"]["metrics"]["phase"]["ssim"] is None
    for key in ("started", "finished"):
        assert ISO_UTC.match(data[key])
    versions = data["environment"]["versions"]
    assert {"python", "numpy", "torch", "lightning", "tensorflow", "keras"} <= set(versions)
    assert data["residual_risks"] and data["artifacts"]


def test_a_backend_that_cannot_run_is_reported_with_its_error(tmp_path, monkeypatch, capsys):
    """Without the backend the command exits 1; --allow-missing-backend accepts it."""
    from ptycho.data.npz import write_scan_npz
    from ptycho_testing import make_test_scan

    data = tmp_path / "scan.npz"
    write_scan_npz(data, make_test_scan(n_side=3))
    monkeypatch.setattr(harness, "backend_status", lambda backend: (
        "BackendUnavailableError: backend 'tensorflow' needs the 'keras' package"
        if backend == "tensorflow" else None))
    monkeypatch.setattr(harness, "run_logged", lambda name, *a, **k: _fake_step(name))
    argv = ["parity", "--data", str(data), "--out", str(tmp_path / "reports"), "--checks", "none",
            "--same-init", "false", "--quiet"]
    assert main(argv) == 1
    assert main([*argv, "--allow-missing-backend"]) == 0
    folders = sorted((tmp_path / "reports").iterdir())
    assert len(folders) == 2
    log = (folders[0] / "tf_baseline.log").read_text()
    assert "cannot run: BackendUnavailableError: backend 'tensorflow' needs the 'keras'" in log
    summary = (folders[0] / "parity_summary.md").read_text()
    assert "BackendUnavailableError" in summary and "**FAILED**" in summary
    assert "**PASSED**" in (folders[1] / "parity_summary.md").read_text()


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["parity", "--data", str(tmp_path / "missing.npz"), "--out",
                 str(tmp_path / "r")]) == 2
    assert "--data" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def small_parity_run(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("parity")
    scan = root / "scan.npz"
    assert main(["simulate", "--out", str(scan), "--object-size", "128", "--step", "8",
                 "--N", "64", "--nphotons", "1e6", "--seed", "1"]) == 0
    status = main(["parity", "--data", str(scan), "--out", str(root / "reports"),
                   "--nepochs", "1", "--n-filters-scale", "1", "--batch-size", "16",
                   "--checks", "quick", "--max-psnr-diff-db", "1000", "--threads", "1",
                   "--quiet"])
    (folder,) = (root / "reports").iterdir()
    return status, folder


def test_small_parity_run_completes_with_a_full_report(small_parity_run):
    status, folder = small_parity_run
    summary = (folder / "parity_summary.md").read_text()
    assert status == 0, summary
    assert re.fullmatch(r"\d{8}T\d{6}Z", folder.name)
    for name, backend in (("tf_baseline.log", "tensorflow"), ("torch_run.log", "pytorch")):
        log = (folder / name).read_text()
        assert "train --train_data_file" in log and f"--backend {backend}" in log
        assert "infer --model_path" in log and log.count("exit status 0") == 2
        assert "--init_weights" in log
    for section in report.SUMMARY_SECTIONS:
        assert section in summary, section

    data = _strict_json(folder / "parity.json")
    assert data["verdict"]["passed"] and data["initial_weights"]["used"]
    for backend in ("tensorflow", "pytorch"):
        run = data["backends"][backend]
        assert run["ok"] and [s["exit_status"] for s in run["steps"]] == [0, 0]
        assert all(ISO_UTC.match(s["started"]) and s["wall_s"] > 0 for s in run["steps"])
        assert run["losses"]["epochs"] == 1 and run["losses"]["source"] == "history.csv"
        assert run["metrics"]["amplitude"]["psnr_db"] is not None
        assert (folder / backend / "model" / "wts.h5.zip").is_file()
    psnr = data["comparison"]["psnr_db"]
    assert psnr["amplitude"]["difference"] is not None and psnr["phase"]["difference"] is not None
    table = data["parity_table"]
    assert table["passed"] and table["max_rel_error"] <= 1e-5
    assert {row["group"] for row in table["rows"]} == {"component", "model"}
    paths = {a["path"] for a in data["artifacts"]}
    assert {"tf_baseline.log", "torch_run.log", "initial_weights/wts.h5.zip",
            "parity.json", "parity_summary.md"} <= paths
