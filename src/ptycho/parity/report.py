"""``parity.json`` and ``parity_summary.md``: the report of ``ptychopinn parity``.

``parity.json`` is strict JSON (non-finite numbers become ``null``) with the keys
``report_format``, ``tool``, ``ptychopinn_version``, ``report_dir``, ``started``, ``finished``
(ISO 8601 UTC), ``wall_s``, ``argv``, ``settings``, ``initial_weights``, ``environment``,
``backends`` (per backend: log, availability, steps with exit status and wall time, losses,
metrics, error), ``comparison`` (PSNR and final-loss differences), ``parity_table`` (rows of
:class:`ptycho.parity.checks.CheckResult`), ``artifacts``, ``residual_risks`` and ``verdict``.
``parity_summary.md`` presents the same content for people.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from ptycho.fileio import write_text_atomic

REPORT_FORMAT = 1
JSON_NAME = "parity.json"
SUMMARY_NAME = "parity_summary.md"
METRIC_ROWS = (("amplitude", "psnr_db", "amplitude PSNR [dB]"), ("phase", "psnr_db", "phase PSNR [dB]"),
               ("amplitude", "ssim", "amplitude SSIM"), ("phase", "ssim", "phase SSIM"),
               ("amplitude", "mae", "amplitude MAE"), ("phase", "mae", "phase MAE [rad]"),
               ("amplitude", "frc50_px", "amplitude FRC 0.5 [px]"),
               ("phase", "frc50_px", "phase FRC 0.5 [px]"))
SUMMARY_SECTIONS = ("## Verdict", "## Settings", "## Environment", "## Backend runs",
                    "## Quality metrics against the ground truth", "## Parity table",
                    "## Artifacts", "## Residual risks")


def _finite(value):
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return _finite(value.item())
        except (TypeError, ValueError):
            return str(value)
    return value


def _psnr(metrics: dict | None, component: str):
    if not metrics:
        return None
    value = (metrics.get(component) or {}).get("psnr_db")
    return float(value) if isinstance(value, (int, float)) else None


def _run_dict(run) -> dict:
    return {
        "log": run.log_file, "available": run.available, "ok": run.ok, "error": run.error,
        "wall_s": run.wall_s, "model_dir": run.model_dir, "inference_dir": run.inference_dir,
        "steps": [{"name": s.name, "command": s.command, "started": s.started,
                   "finished": s.finished, "wall_s": s.wall_s, "exit_status": s.exit_status,
                   "timed_out": s.timed_out, "error": s.error} for s in run.steps],
        "losses": run.losses, "metrics": run.metrics,
    }


def _comparison(runs: dict, max_diff: float) -> dict:
    tf_run, torch_run = runs.get("tensorflow", {}), runs.get("pytorch", {})
    psnr = {}
    evaluated = True
    passed = True
    for component in ("amplitude", "phase"):
        a, b = _psnr(tf_run.get("metrics"), component), _psnr(torch_run.get("metrics"), component)
        diff = abs(a - b) if a is not None and b is not None else None
        psnr[component] = {"tensorflow": a, "pytorch": b, "difference": diff}
        if diff is None:
            evaluated = False
        elif not diff <= max_diff:
            passed = False
    losses = {}
    for key in ("final_train_loss", "final_val_loss"):
        a = (tf_run.get("losses") or {}).get(key)
        b = (torch_run.get("losses") or {}).get(key)
        rel = abs(a - b) / abs(a) if a not in (None, 0) and b is not None else None
        losses[key] = {"tensorflow": a, "pytorch": b, "relative_difference": rel}
    return {"psnr_db": psnr, "max_psnr_diff_db": max_diff, "psnr_evaluated": evaluated,
            "psnr_passed": passed if evaluated else None, "losses": losses}


def _residual_risks(settings, runs: dict, rows: list, environment: dict, same_init: bool,
                    comparison: dict) -> list[str]:
    risks = [
        "Batch order differs between the backends: the PyTorch DataLoader shuffles with a seeded "
        "torch.Generator, the TensorFlow backend with a seeded NumPy permutation, so the same "
        "seed does not give the same batches and the two training trajectories diverge after "
        "the first step; only the data split and (with same-init) the initial weights are shared.",
        "The TensorFlow backend trains with Keras Adam, which adds epsilon to the uncorrected "
        "sqrt(v) (torch adds it to the bias-corrected one); with the same epsilon the first "
        "steps move weights with gradients below ~1e-6 differently (20-step loss curves differ "
        "by up to ~8e-4 relative instead of ~1e-4 with the torch rule, see docs/parity.md).",
        "The parity table is measured on small random data (N=16 components, batches of 2 for "
        "the models) with freshly initialised weights, not on the trained models of this run.",
        "float32 results depend on the kernels and thread count of this machine (oneDNN, "
        "Eigen); the tolerances hold here and are expected, not proven, to hold elsewhere.",
    ]
    if not same_init:
        risks.append("The backends started from different random initial weights (same-init "
                     "off or unavailable): quality differences include initialisation luck.")
    if not environment.get("gpus"):
        risks.append("No GPU was visible: GPU kernels (cuDNN, CUDA FFT) were not exercised.")
    if not comparison["psnr_evaluated"]:
        risks.append("Quality metrics were not compared for both backends (no objectGuess in "
                     "the test scan, or a backend did not finish).")
    if settings.checks != "full":
        risks.append(f"Parity checks ran at level '{settings.checks}', a subset of the full "
                     "set (16 model configurations, both optimiser rules).")
    if settings.nepochs < 10:
        risks.append(f"Short training ({settings.nepochs} epoch(s)): quality metrics mostly "
                     "reflect the early phase of training, where small differences grow fastest.")
    if any(not run["available"] for run in runs.values()):
        risks.append("A backend could not run, so cross-backend comparisons are incomplete.")
    return risks


def _artifacts(report_dir: Path) -> list[dict]:
    files = []
    for path in sorted(report_dir.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            files.append({"path": str(path.relative_to(report_dir)), "bytes": path.stat().st_size})
    return files


def build_report(*, settings, report_dir: Path, started: str, finished: str, wall_s: float,
                 environment: dict, runs: list, rows: list, checks_seconds: float,
                 checks_error: str | None, init_dir: Path | None, init_error: str | None) -> dict:
    """Assemble the report dict (see the module docstring) including the verdict."""
    from ptycho import __version__

    run_dicts = {run.backend: _run_dict(run) for run in runs}
    comparison = _comparison(run_dicts, settings.max_psnr_diff_db)
    failures, notes = [], []
    for run in runs:
        if not run.available:
            message = f"backend '{run.backend}' cannot run: {run.error}"
            (notes if settings.allow_missing_backend else failures).append(
                message + (" (allowed by --allow-missing-backend)"
                           if settings.allow_missing_backend else ""))
        elif not run.ok:
            failures.append(f"backend '{run.backend}' failed: {run.error}")
    if not any(run.ok for run in runs):
        failures.append("no backend completed the train -> infer cycle")
    table_rows = [row.as_dict() for row in rows]
    ran = [row for row in rows if row.error is None]
    bad = [row for row in rows if not row.passed and not (
        row.missing_backend and settings.allow_missing_backend)]
    for row in bad:
        if row.error:
            failures.append(f"parity check '{row.quantity}' ({row.group}) could not run: "
                            f"{row.error}")
        else:
            failures.append(f"parity check '{row.quantity}' ({row.comparison}, {row.dtype}, "
                            f"{row.config}): relative error {row.max_rel:.3g} > "
                            f"{row.tolerance:.3g}")
    if checks_error:
        failures.append(f"parity checks crashed: {checks_error}")
    if settings.checks == "none":
        notes.append("parity checks skipped (--checks none)")
    if comparison["psnr_evaluated"]:
        if not comparison["psnr_passed"]:
            diffs = ", ".join(f"{c} {v['difference']:.3f} dB"
                              for c, v in comparison["psnr_db"].items())
            failures.append(f"PSNR difference above {settings.max_psnr_diff_db:g} dB: {diffs}")
    else:
        notes.append("PSNR agreement not evaluated (metrics missing for a backend)")
    if init_error:
        notes.append(f"same initial weights not used: {init_error}")
    same_init = init_dir is not None
    report = {
        "report_format": REPORT_FORMAT,
        "tool": "ptychopinn parity",
        "ptychopinn_version": __version__,
        "report_dir": str(report_dir),
        "started": started,
        "finished": finished,
        "wall_s": wall_s,
        "argv": list(sys.argv),
        "settings": settings.as_dict(),
        "initial_weights": {
            "same_init_requested": settings.same_init, "used": same_init,
            "archive": (str(Path(init_dir, "wts.h5.zip").relative_to(report_dir))
                        if same_init else None),
            "error": init_error},
        "environment": environment,
        "backends": run_dicts,
        "comparison": comparison,
        "parity_table": {
            "level": settings.checks, "seconds": checks_seconds, "error": checks_error,
            "rows": table_rows,
            "max_rel_error": max((row.max_rel for row in ran if row.group != "training"),
                                 default=None),
            "max_rel_loss_curve": max((row.max_rel for row in ran if row.group == "training"),
                                      default=None),
            "passed": not [row for row in bad] and checks_error is None,
        },
        "artifacts": [],
        "residual_risks": _residual_risks(settings, run_dicts, rows, environment, same_init,
                                          comparison),
        "verdict": {"passed": not failures, "failures": failures, "notes": notes},
    }
    report["artifacts"] = _artifacts(report_dir) + [{"path": JSON_NAME, "bytes": None},
                                                    {"path": SUMMARY_NAME, "bytes": None}]
    return _finite(report)


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------

def _fmt(value, spec: str = ".4g") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    def clean(cell):
        return str(cell).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return lines


def render_summary(report: dict) -> str:
    """``parity_summary.md`` from the report dict."""
    verdict = report["verdict"]
    out = ["# ptychopinn parity report", ""]
    out += ["## Verdict", "",
            f"**{'PASSED' if verdict['passed'] else 'FAILED'}**: started {report['started']}, "
            f"finished {report['finished']} (UTC), wall time {report['wall_s']:.1f} s.", ""]
    out += [f"- failure: {text}" for text in verdict["failures"]]
    out += [f"- note: {text}" for text in verdict["notes"]]
    out += [""]

    settings = report["settings"]
    out += ["## Settings", ""]
    out += _table(["setting", "value"], [[k, _fmt(v)] for k, v in settings.items()])
    init = report["initial_weights"]
    out += ["", "Initial weights: " + (f"both backends start from `{init['archive']}` "
                                       "(generator weights, `train --init_weights`)."
                                       if init["used"] else
                                       "each backend starts from its own random initialisation"
                                       + (f" ({init['error']})." if init.get("error") else ".")),
            "", "Command lines:", "", "```"]
    for run in report["backends"].values():
        for step in run["steps"]:
            out.append(" ".join(step["command"]))
    out += ["```", ""]

    env = report["environment"]
    out += ["## Environment", ""]
    rows = [[name, _fmt(version)] for name, version in env["versions"].items()]
    rows += [["platform", env["platform"]], ["CPU", f"{env['cpu']} ({env['cpu_count']} cores)"],
             ["GPU", "; ".join(env["gpus"]) if env["gpus"] else "none visible"]]
    out += _table(["item", "value"], rows) + [""]

    out += ["## Backend runs", ""]
    rows = []
    for backend, run in report["backends"].items():
        steps = {s["name"]: s for s in run["steps"]}
        losses = run["losses"] or {}
        rows.append([backend, f"`{run['log']}`",
                     "not run" if not run["available"] else _fmt(steps.get("train", {}).get("exit_status")),
                     _fmt(steps.get("infer", {}).get("exit_status")) if "infer" in steps else "not run",
                     _fmt(steps.get("train", {}).get("wall_s"), ".1f"),
                     _fmt(steps.get("infer", {}).get("wall_s"), ".1f"),
                     _fmt(losses.get("epochs")), _fmt(losses.get("final_train_loss"), ".6g"),
                     _fmt(losses.get("final_val_loss"), ".6g"), _fmt(losses.get("best_epoch"))])
    out += _table(["backend", "log", "train exit", "infer exit", "train wall [s]",
                   "infer wall [s]", "epochs", "final train loss", "final val loss",
                   "best epoch"], rows)
    loss_cmp = report["comparison"]["losses"]
    out += ["", "Relative difference of the final losses (TensorFlow baseline): "
            + ", ".join(f"{key} {_fmt(value['relative_difference'], '.3g')}"
                        for key, value in loss_cmp.items()) + "."]
    for backend, run in report["backends"].items():
        if run["error"]:
            out += ["", f"Error of the {backend} run (exact; full output in `{run['log']}`):",
                    "", "```", run["error"], "```"]
    out += [""]

    comparison = report["comparison"]
    out += ["## Quality metrics against the ground truth", ""]
    rows = []
    for component, key, label in METRIC_ROWS:
        values = []
        for backend in ("tensorflow", "pytorch"):
            metrics = (report["backends"].get(backend) or {}).get("metrics") or {}
            values.append((metrics.get(component) or {}).get(key))
        diff = (abs(values[0] - values[1])
                if all(isinstance(v, (int, float)) for v in values) else None)
        rows.append([label, _fmt(values[0]), _fmt(values[1]), _fmt(diff, ".3g")])
    out += _table(["metric", "tensorflow", "pytorch", "|difference|"], rows)
    if comparison["psnr_evaluated"]:
        out += ["", f"PSNR agreement (|difference| <= {comparison['max_psnr_diff_db']:g} dB for "
                f"amplitude and phase): **{'yes' if comparison['psnr_passed'] else 'no'}**."]
    else:
        out += ["", "PSNR agreement not evaluated: metrics.json missing for a backend (the test "
                "scan needs objectGuess, and both runs must finish)."]
    out += [""]

    table = report["parity_table"]
    out += ["## Parity table", ""]
    if table["level"] == "none":
        out += ["Skipped (`--checks none`).", ""]
    else:
        out += [f"Level `{table['level']}`, computed in the harness process in "
                f"{table['seconds']:.1f} s on small random data (the same checks as "
                f"`tests/parity/`). Largest relative error of the component and model "
                f"checks: {_fmt(table['max_rel_error'], '.3g')} (tolerance 1e-5, float64 1e-6); "
                f"of the loss curves: {_fmt(table['max_rel_loss_curve'], '.3g')} (tolerance "
                f"1e-3); all within tolerance: "
                f"**{'yes' if table['passed'] else 'no'}**. Relative error = max|a-b| / max|b|, "
                "b the NumPy float64 reference or the TensorFlow result.", ""]
        if table["error"]:
            out += ["```", table["error"], "```", ""]
        rows = [[r["group"], r["quantity"], r["comparison"], r["dtype"], r["config"],
                 _fmt(r["max_abs"], ".3g"), _fmt(r["max_rel"], ".3g"), _fmt(r["tolerance"], ".0e"),
                 ("ok" if r["passed"] else ("ERROR: " + r["error"] if r["error"] else "FAIL"))]
                for r in table["rows"]]
        out += _table(["group", "quantity", "comparison", "dtype", "configuration", "max abs",
                       "max rel", "tolerance", "result"], rows) + [""]

    out += ["## Artifacts", "", f"In `{report['report_dir']}`:", ""]
    out += [f"- `{a['path']}`" + (f" ({a['bytes']} bytes)" if a["bytes"] is not None else "")
            for a in report["artifacts"]]
    out += ["", "## Residual risks", ""]
    out += [f"- {risk}" for risk in report["residual_risks"]]
    return "\n".join(out) + "\n"


def write_report(report_dir: Path, report: dict) -> tuple[Path, Path]:
    """Write ``parity.json`` (strict JSON) and ``parity_summary.md`` atomically."""
    report_dir = Path(report_dir)
    json_path = report_dir / JSON_NAME
    summary_path = report_dir / SUMMARY_NAME
    write_text_atomic(json_path, json.dumps(_finite(report), indent=2, allow_nan=False) + "\n")
    write_text_atomic(summary_path, render_summary(report))
    return json_path, summary_path
