"""The end-to-end parity harness behind ``ptychopinn parity``.

For each backend (TensorFlow first, the baseline, then PyTorch) it runs, in its own
subprocess, ``python -m ptycho.cli.main train ...`` and then ``infer ...`` with identical
settings and seeds, tees the complete output (stdout and stderr, also on failure) to
``<REPORTS>/<UTC timestamp>/tf_baseline.log`` / ``torch_run.log``, then computes the
component/model parity table in this process (:func:`ptycho.parity.checks.run_checks`) and
writes ``parity_summary.md`` and ``parity.json`` (:mod:`ptycho.parity.report`).

By default both backends start from the same initial generator weights: a seeded PyTorch model
(TensorFlow when PyTorch is missing) is written to ``initial_weights/wts.h5.zip`` and both
``train`` runs get ``--init_weights`` (the TensorFlow run converts it on load). Batch order
still differs between the backends (see ``docs/parity.md``).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ptycho.errors import InputError

log = logging.getLogger(__name__)

# (backend, log file name, short label); the TensorFlow run is the baseline and runs first.
BACKEND_RUNS = (("tensorflow", "tf_baseline.log", "tf"), ("pytorch", "torch_run.log", "torch"))
CHECK_LEVELS = ("full", "standard", "quick", "none")
PACKAGES = ("python", "numpy", "scipy", "torch", "lightning", "tensorflow", "keras",
            "ptychopinn")


def utc_iso(moment: _dt.datetime | None = None) -> str:
    """ISO 8601 UTC with a 'Z' suffix, seconds precision."""
    moment = moment or _dt.datetime.now(_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


@dataclass
class HarnessSettings:
    """What ``ptychopinn parity`` was asked to do (see ``ptycho.cli.parity_cmd``)."""

    data: Path
    out: Path
    test_data: Path | None = None
    nepochs: int = 10
    batch_size: int | None = None
    gridsize: int | None = None
    n_filters_scale: int | None = None
    n_groups: int | None = None
    seed: int = 42
    config: Path | None = None
    accelerator: str | None = None
    same_init: bool = True
    checks: str = "standard"
    max_psnr_diff_db: float = 1.0
    allow_missing_backend: bool = False
    timeout_s: float | None = None
    threads: int | None = None
    echo: bool = True

    def as_dict(self) -> dict:
        return {key: (str(value) if isinstance(value, Path) else value)
                for key, value in self.__dict__.items() if key != "echo"}


@dataclass
class StepResult:
    """One subprocess (``train`` or ``infer``)."""

    name: str
    command: list[str]
    started: str
    finished: str = ""
    wall_s: float = 0.0
    exit_status: int | None = None
    timed_out: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass
class BackendRun:
    """Everything the harness learnt about one backend's train -> save -> load -> infer cycle."""

    backend: str
    log_file: str
    available: bool = True
    error: str | None = None
    steps: list[StepResult] = field(default_factory=list)
    model_dir: str = ""
    inference_dir: str = ""
    losses: dict = field(default_factory=dict)
    metrics: dict | None = None

    @property
    def ok(self) -> bool:
        return self.available and len(self.steps) == 2 and all(s.ok for s in self.steps)

    @property
    def wall_s(self) -> float:
        return sum(step.wall_s for step in self.steps)


# ---------------------------------------------------------------------------------------------
# Report folder, environment
# ---------------------------------------------------------------------------------------------

def make_report_dir(out: Path, now: _dt.datetime | None = None) -> Path:
    """Create ``<out>/<UTC timestamp>`` (ISO 8601 basic format, e.g. ``20250102T030405Z``).

    An existing folder is never reused: ``-2``, ``-3``, ... are appended until a new folder
    can be created (``mkdir`` without ``exist_ok``, so concurrent runs cannot collide).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    moment = (now or _dt.datetime.now(_dt.timezone.utc)).astimezone(_dt.timezone.utc)
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(1, 1000):
        candidate = out / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise InputError("cannot create a report folder", str(out), "a writable folder",
                     f"{stamp} and 998 suffixed names exist")


def _version(package: str) -> str | None:
    if package == "python":
        return sys.version.split()[0]
    from importlib import metadata

    names = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly")}.get(package, (package,))
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _cpu_model() -> str:
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_environment() -> dict:
    """Versions, platform, CPU and GPU of this machine (frameworks queried only if loaded)."""
    import platform

    env: dict = {"versions": {name: _version(name) for name in PACKAGES},
                 "platform": platform.platform(), "cpu": _cpu_model(),
                 "cpu_count": os.cpu_count(), "gpus": [], "python_executable": sys.executable}
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                env["gpus"] += [f"cuda:{i} {torch.cuda.get_device_name(i)} (torch)"
                                for i in range(torch.cuda.device_count())]
        except Exception as exc:  # report, never fail the harness over a device query
            env["gpus"].append(f"torch device query failed: {exc}")
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            env["gpus"] += [f"{d.name} (tensorflow)" for d in tf.config.list_physical_devices("GPU")]
        except Exception as exc:
            env["gpus"].append(f"tensorflow device query failed: {exc}")
    env["threads"] = {key: os.environ.get(key) for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
                      if os.environ.get(key)}
    return env


# ---------------------------------------------------------------------------------------------
# Subprocesses
# ---------------------------------------------------------------------------------------------

def _child_env(seed: int, threads: int | None = None) -> dict:
    """Environment of the train/infer subprocesses: this one plus seeds, determinism, and with
    ``threads`` the same CPU thread count for both frameworks."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])       # the folder holding the ptycho package
    env["PYTHONPATH"] = os.pathsep.join([src] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                 else []))
    env.update(PYTHONUNBUFFERED="1", PYTHONHASHSEED=str(seed), MPLBACKEND="Agg",
               TF_DETERMINISTIC_OPS="1", CUBLAS_WORKSPACE_CONFIG=":4096:8")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads:
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS"):
            env[key] = str(threads)
    return env


def _error_from_output(lines: list[str]) -> str | None:
    """The CLI's error line(s) from a failed run, else the last lines of its output."""
    picked = [line.rstrip() for line in lines
              if line.startswith(("error:", "internal error:", "interrupted"))]
    if picked:
        return "\n".join(picked[-3:])
    tail = [line.rstrip() for line in lines if line.strip()][-8:]
    return "\n".join(tail) if tail else None


def run_logged(name: str, command: list[str], log_handle, *, env: dict,
               timeout_s: float | None = None, echo: bool = True, prefix: str = "") -> StepResult:
    """Run ``command``, teeing its merged stdout+stderr to ``log_handle`` (and our stdout)."""
    started = utc_iso()
    log_handle.write(f"\n# ---- {name} ---- started {started}\n$ {' '.join(command)}\n")
    log_handle.flush()
    result = StepResult(name=name, command=command, started=started)
    lines: list[str] = []
    begin = time.perf_counter()
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, text=True,
                                   errors="replace", bufsize=1)
    except OSError as exc:
        result.exit_status, result.error = -1, f"could not start: {type(exc).__name__}: {exc}"
        log_handle.write(f"# {result.error}\n")
        result.finished = utc_iso()
        return result
    timer = None
    if timeout_s:
        def _kill():
            result.timed_out = True
            process.kill()
        timer = threading.Timer(timeout_s, _kill)
        timer.start()
    try:
        for line in process.stdout:
            lines.append(line)
            if len(lines) > 400:
                del lines[:200]
            log_handle.write(line)
            log_handle.flush()
            if echo:
                sys.stdout.write(prefix + line)
                sys.stdout.flush()
        process.wait()
    finally:
        if timer is not None:
            timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    result.wall_s = time.perf_counter() - begin
    result.exit_status = process.returncode
    result.finished = utc_iso()
    if result.timed_out:
        result.error = f"timed out after {timeout_s:g} s (killed)"
    elif result.exit_status != 0:
        result.error = _error_from_output(lines) or f"exit status {result.exit_status}"
    log_handle.write(f"# ---- {name}: exit status {result.exit_status} after "
                     f"{result.wall_s:.1f} s, finished {result.finished}\n")
    log_handle.flush()
    return result


def train_command(settings: HarnessSettings, backend: str, model_dir: Path,
                  init_weights: Path | None) -> list[str]:
    """The ``train`` command line of one backend (identical apart from --backend/--output_dir)."""
    command = [sys.executable, "-m", "ptycho.cli.main", "train",
               "--train_data_file", str(Path(settings.data).resolve()),
               "--output_dir", str(model_dir), "--backend", backend,
               "--nepochs", str(settings.nepochs), "--seed", str(settings.seed)]
    for flag, value in (("--config", settings.config), ("--batch_size", settings.batch_size),
                        ("--gridsize", settings.gridsize),
                        ("--n_filters_scale", settings.n_filters_scale),
                        ("--n_groups", settings.n_groups),
                        ("--accelerator", settings.accelerator),
                        ("--init_weights", init_weights)):
        if value is not None:
            command += [flag, str(Path(value).resolve()) if isinstance(value, Path) else str(value)]
    return command


def infer_command(settings: HarnessSettings, backend: str, model_dir: Path,
                  inference_dir: Path) -> list[str]:
    test = Path(settings.test_data or settings.data).resolve()
    return [sys.executable, "-m", "ptycho.cli.main", "infer", "--model_path", str(model_dir),
            "--test_data", str(test), "--output_dir", str(inference_dir), "--backend", backend]


# ---------------------------------------------------------------------------------------------
# Results of a run
# ---------------------------------------------------------------------------------------------

def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_losses(model_dir: Path) -> dict:
    """Final and best losses from ``history.csv`` (else the archive manifest's summary)."""
    losses: dict = {}
    history = Path(model_dir) / "history.csv"
    if history.is_file():
        with open(history, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if rows:
            losses["source"] = "history.csv"
            losses["epochs"] = len(rows)
            for key in ("train_loss", "val_loss"):
                values = [v for v in (_float(row.get(key)) for row in rows) if v is not None]
                if values:
                    losses[f"final_{key}"] = values[-1]
                    losses[f"min_{key}"] = min(values)
            scale = _float(rows[-1].get("intensity_scale"))
            if scale is not None:
                losses["final_intensity_scale"] = scale
    archive = Path(model_dir) / "wts.h5.zip"
    if archive.is_file():
        try:
            from ptycho.archive import read_archive

            summary = read_archive(archive).manifest.get("history_summary", {})
            if "best_epoch" in summary:
                losses["best_epoch"] = summary["best_epoch"]
            if not losses.get("source"):
                losses.update(summary)
                losses["source"] = "archive manifest"
        except Exception as exc:  # a damaged archive is itself a finding
            losses["archive_error"] = f"{type(exc).__name__}: {exc}"
    return losses


def read_metrics(inference_dir: Path) -> dict | None:
    path = Path(inference_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return {"error": f"unreadable metrics.json: {exc}"}


# ---------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------

def backend_status(backend: str) -> str | None:
    """None when ``backend`` can be imported here, else the exact error."""
    from ptycho.backends import load_backend

    try:
        load_backend(backend)
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _training_config(settings: HarnessSettings, scan):
    """The TrainingConfig the ``train`` runs will build (flags > --config file > defaults)."""
    from ptycho.cli.config_flags import training_flag_names
    from ptycho.config.config import validate_training_config
    from ptycho.config.files import build_training_config, load_config_file

    flags = dict.fromkeys(training_flag_names())
    flags.update(nepochs=settings.nepochs, seed=settings.seed, batch_size=settings.batch_size,
                 gridsize=settings.gridsize, n_filters_scale=settings.n_filters_scale,
                 n_groups=settings.n_groups)
    file_values = load_config_file(settings.config) if settings.config else None
    config = build_training_config(flags, file_values)
    if config.model.N in (0, None) or not (file_values and "N" in file_values):
        config.model.N = scan.N
    validate_training_config(config)
    return config


def write_initial_weights(settings: HarnessSettings, report_dir: Path, backend: str,
                          scan=None, config=None) -> Path:
    """Write the seeded initial model both runs start from; return its folder."""
    from ptycho import physics
    from ptycho.archive import write_archive
    from ptycho.data.io import read_scan
    from ptycho.parity.weights import build_model

    scan = scan if scan is not None else read_scan(settings.data)
    config = config if config is not None else _training_config(settings, scan)
    nphotons = float(config.nphotons) if config.nphotons else physics.mean_photons_per_pattern(
        scan.diffraction, scan.bad_pixels, scan.saturation_counts)
    probe = physics.normalize_probe(scan.probe, config.model.probe_scale).astype("complex64")
    scale = physics.intensity_scale(nphotons, config.model.N)
    if backend == "pytorch":
        import torch

        torch.manual_seed(settings.seed)
    else:
        import keras

        keras.utils.set_random_seed(settings.seed)
    model = build_model(backend, config.model, probe, scale, history={})
    folder = report_dir / "initial_weights"
    folder.mkdir()
    config.backend = backend
    write_archive(folder, model, config, nphotons=nphotons)
    return folder


def _check_inputs(settings: HarnessSettings) -> None:
    for option, path in (("--data", settings.data), ("--test-data", settings.test_data),
                         ("--config", settings.config)):
        if path is not None and not Path(path).is_file():
            raise InputError("file not found", option, "an existing file", str(path))
    if settings.threads is not None and settings.threads < 1:
        raise InputError("invalid value", "--threads", "an integer >= 1", str(settings.threads))
    if settings.nepochs < 1:
        raise InputError("invalid value", "--nepochs", "an integer >= 1", str(settings.nepochs))
    if settings.checks not in CHECK_LEVELS:
        raise InputError("invalid value", "--checks", f"one of {', '.join(CHECK_LEVELS)}",
                         repr(settings.checks))
    if not settings.max_psnr_diff_db >= 0:
        raise InputError("invalid value", "--max-psnr-diff-db", "a number >= 0",
                         str(settings.max_psnr_diff_db))
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise InputError("output path is a file", "--out", "a folder (existing or new)", str(out))


def _limit_threads(threads: int | None):
    """Use ``threads`` CPU threads in this process; return a function restoring torch's count."""
    torch = sys.modules.get("torch") if threads else None
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    tf = sys.modules.get("tensorflow") if threads else None
    if tf is not None:
        try:    # only possible before TensorFlow has run an op
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass

    def restore() -> None:
        if torch is not None:
            torch.set_num_threads(before)

    return restore


def run_parity_checks(level: str, threads: int | None = None) -> tuple[list, float, str | None]:
    """``(rows, seconds, error)`` of :func:`ptycho.parity.checks.run_checks` at ``level``."""
    from ptycho.parity import checks

    if level == "none":
        return [], 0.0, None
    start = time.perf_counter()
    restore = _limit_threads(threads)
    try:
        rows = checks.run_checks(level)
        return rows, time.perf_counter() - start, None
    except Exception as exc:
        return [], time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
    finally:
        restore()


@dataclass
class HarnessResult:
    report_dir: Path
    report: dict
    exit_status: int


def run_harness(settings: HarnessSettings) -> HarnessResult:
    """Run the whole parity harness and write the report; see the module docstring."""
    from ptycho.data.io import read_scan
    from ptycho.parity import report as report_mod

    _check_inputs(settings)
    started = utc_iso()
    begin = time.perf_counter()
    # bad data or configuration: refuse before anything is created or run
    scan = read_scan(settings.data)
    config = _training_config(settings, scan)
    report_dir = make_report_dir(Path(settings.out).resolve())
    env = _child_env(settings.seed, settings.threads)
    statuses = {backend: backend_status(backend) for backend, _, _ in BACKEND_RUNS}

    init_dir, init_error = None, None
    if settings.same_init:
        usable = [b for b in ("pytorch", "tensorflow") if statuses[b] is None]
        if usable:
            try:
                init_dir = write_initial_weights(settings, report_dir, usable[0], scan, config)
            except Exception as exc:
                init_error = f"{type(exc).__name__}: {exc}"
                log.warning("could not write the initial weights (%s); each backend starts from "
                            "its own random initialisation", init_error)

    runs: list[BackendRun] = []
    for backend, log_name, label in BACKEND_RUNS:
        run = BackendRun(backend=backend, log_file=log_name)
        model_dir = report_dir / backend / "model"
        inference_dir = report_dir / backend / "inference"
        run.model_dir = str(model_dir.relative_to(report_dir))
        run.inference_dir = str(inference_dir.relative_to(report_dir))
        with open(report_dir / log_name, "w", encoding="utf-8") as handle:
            handle.write(f"# ptychopinn parity: {backend} run, report {report_dir}\n"
                         f"# started {utc_iso()}\n")
            if statuses[backend] is not None:
                run.available = False
                run.error = statuses[backend]
                handle.write(f"# backend '{backend}' cannot run: {run.error}\n")
                runs.append(run)
                continue
            train = run_logged("train", train_command(settings, backend, model_dir, init_dir),
                               handle, env=env, timeout_s=settings.timeout_s,
                               echo=settings.echo, prefix=f"[{label}] ")
            run.steps.append(train)
            if train.ok:
                infer = run_logged("infer", infer_command(settings, backend, model_dir,
                                                          inference_dir),
                                   handle, env=env, timeout_s=settings.timeout_s,
                                   echo=settings.echo, prefix=f"[{label}] ")
                run.steps.append(infer)
            failed = [s for s in run.steps if not s.ok]
            if failed:
                run.error = f"{failed[0].name} failed: {failed[0].error}"
            elif len(run.steps) < 2:
                run.error = "train failed; infer not run"
            handle.write(f"# finished {utc_iso()}\n")
        run.losses = read_losses(model_dir)
        run.metrics = read_metrics(inference_dir)
        runs.append(run)

    rows, checks_seconds, checks_error = run_parity_checks(settings.checks, settings.threads)
    report = report_mod.build_report(
        settings=settings, report_dir=report_dir, started=started, finished=utc_iso(),
        wall_s=time.perf_counter() - begin, environment=collect_environment(), runs=runs,
        rows=rows, checks_seconds=checks_seconds, checks_error=checks_error,
        init_dir=init_dir, init_error=init_error)
    report_mod.write_report(report_dir, report)
    return HarnessResult(report_dir=report_dir, report=report,
                         exit_status=0 if report["verdict"]["passed"] else 1)
