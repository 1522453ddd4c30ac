"""``make bench-quality``: reconstruction quality per unit of compute, on natural-image scans.

Scans (``SCANS``): N=64, 512 Fermat-spiral positions (6 px apart) on a 224 x 224 object, the
defocused (ringed) probe, 1e6 photons per pattern. The object's amplitude and phase come from
two different scikit-image photographs; the network trains on scan ``train`` and is also
tested on scan ``new`` (other images, never seen in training).

Every reconstruction is scored by ``ptycho.evaluation`` (sub-pixel registration; global phase,
linear phase ramp and amplitude scale removed, as issue 13 specifies; ``--no-remove-phase-ramp``
keeps the ramp, as the records before 2026-12-08 did) on the same truth pixels: the union of
the central N/2 x N/2 boxes of the scan positions (what probe-weighted stitching covers).
Beside them, computed the same way on the same pixels, the calibration rows: a flat object,
the truth blurred by 3 px and by 1.5 px (``ptycho.evaluation.calibration_metrics``).

Sections (``--sections``):

``refine``
    The iterative solver (``ptycho.refine``) from a flat object, K iterations, for several
    minibatch seeds (worst and median reported), plus one SSIM-per-iteration curve per seed.
``network``
    The PINN (default recipe) trained for E epochs on ``train``, per backend, architecture and
    training seed; scored on ``train`` and ``new``, then polished by K solver iterations
    (``infer --refine-iterations``), and on ``new`` after test-time adaptation
    (``infer --adapt-epochs``). ``--loss amplitude-mae`` trains with the amplitude MAE
    instead of the Poisson NLL.
``ceiling``
    The generator trained on the training scan's ground truth (supervised, early stopping
    off): a practical upper bound for the network rows at the same epochs.
``targets``
    ``train --targets refine:K`` (solver targets + physics loss) beside plain training, for
    the target weights given; total wall time includes the solver.

Writes ``benchmarks/results/quality-<UTC timestamp>.json``, ``.md`` and ``.png`` (SSIM against
iterations and against seconds). Run ``python benchmarks/quality.py --help``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: ``ptycho.data.simulation.simulate`` arguments of the two benchmark scans.
SCANS = {
    "train": dict(object_kind="image:camera:astronaut", seed=1),
    "new": dict(object_kind="image:coffee:chelsea", seed=2),
}
SCAN_COMMON = dict(probe_kind="defocused", scan_kind="spiral", N=64, object_size=224, step=6.0,
                   n_positions=512, nphotons=1e6)
COMPONENTS = ("amplitude", "phase")
#: pty-chi 2.2.0 LSQML (defaults: batch 100, Gaussian model, true probe fixed) from a flat
#: object on these two benchmark scans, scored by :func:`score` on the same pixels, measured
#: once in a scratch venv (pty-chi is not a dependency): benchmarks/results/lsqml-20261207.md.
#: (epochs, train scan amp/phase SSIM, new scan amp/phase SSIM); about 0.95 s per epoch here.
LSQML_REFERENCE = ((4, "0.575 / 0.441", "0.819 / 0.784"), (8, "0.691 / 0.548", "0.882 / 0.843"),
                   (20, "0.761 / 0.649", "0.897 / 0.914"), (40, "0.771 / 0.733", "0.899 / 0.953"))
LSQML_SECONDS_PER_EPOCH = 0.95
#: ``--loss``: the data term of the network's training (TrainingConfig weights). 'nll' is the
#: Poisson NLL of the counts (the default recipe); 'amplitude-mae' the mean absolute error of
#: the far-field amplitudes (sqrt counts), whose gradient does not grow with the counts.
LOSSES = {"nll": {}, "amplitude-mae": {"mae_weight": 1.0, "nll_weight": 0.0}}


def utc_stamp() -> str:
    """Now in UTC as ``YYYYMMDDTHHMMSSZ``, the suffix of the result files."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def utc_created() -> str:
    """Now in UTC as ``YYYY-MM-DDTHH:MM:SSZ``, the ``created`` field of the records."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_record(out_dir: Path, name: str, stamp: str, report: dict, text: str) -> Path:
    """Write ``<out_dir>/<name>-<stamp>.json`` (``report``) and ``.md`` (``text``); return the
    path without suffix."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"{name}-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float))
    base.with_suffix(".md").write_text(text)
    return base


def make_scans(names=SCANS) -> dict:
    from ptycho.data.simulation import simulate

    return {name: simulate(**SCAN_COMMON, **SCANS[name]).scan for name in names}


def scored_region(scan) -> np.ndarray:
    """Truth pixels inside the central N/2 box of some scan position, (H, W) bool."""
    n = scan.N
    mask = np.zeros(scan.object_guess.shape, bool)
    for x, y in zip(scan.xcoords, scan.ycoords):
        r0, c0 = int(np.ceil(y - n / 4)), int(np.ceil(x - n / 4))
        mask[max(r0, 0):r0 + n // 2, max(c0, 0):c0 + n // 2] = True
    return mask


def score(obj, x0_px, y0_px, weight, scan, region, remove_phase_ramp: bool = False) -> dict:
    """SSIM and PSNR of a reconstruction on ``region`` (truth grid) and its own covered pixels;
    ``remove_phase_ramp`` also removes the linear phase ramp (``--remove-phase-ramp``)."""
    from ptycho.evaluation import evaluate_reconstruction

    rows = np.arange(obj.shape[0]) + int(round(y0_px))
    cols = np.arange(obj.shape[1]) + int(round(x0_px))
    inside = ((rows[:, None] >= 0) & (rows[:, None] < region.shape[0])
              & (cols[None, :] >= 0) & (cols[None, :] < region.shape[1]))
    mapped = np.zeros(obj.shape, bool)
    mapped[inside] = region[np.clip(rows, 0, region.shape[0] - 1)[:, None].repeat(len(cols), 1)[inside],
                            np.clip(cols, 0, region.shape[1] - 1)[None, :].repeat(len(rows), 0)[inside]]
    valid = mapped & (np.asarray(weight) > 0)
    metrics = evaluate_reconstruction(obj, x0_px, y0_px, scan.object_guess,
                                      scan_xy=np.column_stack([scan.xcoords, scan.ycoords]),
                                      valid=valid, remove_phase_ramp=remove_phase_ramp)
    return flatten(metrics)


def flatten(metrics: dict) -> dict:
    return {f"{c}_{k}": float(metrics[c][k]) for c in COMPONENTS for k in ("ssim", "psnr_db")}


def calibration(scan, region, remove_phase_ramp: bool = False) -> dict:
    from ptycho.evaluation import calibration_metrics

    rows = calibration_metrics(scan.object_guess, region,
                               scan_xy=np.column_stack([scan.xcoords, scan.ycoords]),
                               remove_phase_ramp=remove_phase_ramp)
    return {name: flatten(metrics) for name, metrics in rows.items()}


def worst_and_median(runs: list[dict]) -> dict:
    """Per metric: the worst (lowest) and the median over runs; seconds: the median."""
    out = {"runs": len(runs)}
    for key in runs[0]:
        values = [run[key] for run in runs]
        if key.endswith("_s"):
            out[key] = statistics.median(values)
        else:
            out[f"{key}_worst"] = min(values)
            out[f"{key}_median"] = statistics.median(values)
    return out


# -- sections -----------------------------------------------------------------------------------

def bench_refine(scans, regions, args) -> dict:
    from ptycho.refine import RefineOptions, refine

    out = {"rows": {}, "curves": {}}
    for name, scan in scans.items():
        for iterations in args.iterations:
            runs = []
            for seed in args.solver_seeds:
                result = refine(scan, options=RefineOptions(iterations=iterations, seed=seed))
                runs.append({**score(result.object, result.x0_px, result.y0_px, result.weight,
                                     scan, regions[name], args.remove_phase_ramp),
                             "solver_s": result.history["time_s"][-1]})
            out["rows"][f"{name}: refine from flat, {iterations} iterations"] = worst_and_median(runs)
            print(f"[refine] {name} K={iterations}: {out['rows'][f'{name}: refine from flat, {iterations} iterations']}",
                  file=sys.stderr, flush=True)
        curve_iterations = max(args.iterations)
        for seed in args.solver_seeds:
            def on_iteration(k, snapshot, name=name, scan=scan):
                return score(snapshot.object, snapshot.x0_px, snapshot.y0_px, snapshot.weight,
                             scan, regions[name], args.remove_phase_ramp)

            result = refine(scan, options=RefineOptions(iterations=curve_iterations, seed=seed),
                            on_iteration=on_iteration)
            out["curves"][f"{name}: refine from flat, seed {seed}"] = result.history
    return out


def train_model(scan, backend: str, architecture: str, epochs: int, seed: int,
                model_fields: dict | None = None, **fields):
    """Train on ``scan`` without writing outputs; ``model_fields`` go to ModelConfig, ``fields``
    to TrainingConfig. Returns ``(model, seconds, epochs_run)``."""
    from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
    from ptycho.workflows import training

    config = TrainingConfig(model=ModelConfig(N=scan.N, architecture=architecture,
                                              **(model_fields or {})),
                            nepochs=epochs, backend=backend, seed=seed, **fields)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config.output_dir = Path(tmp)
        result = training.train(config, ExecutionConfig(progress_bar=False, logger="none"),
                                train_scan=scan, write_outputs=False)
    return result.model, time.perf_counter() - started, len(result.history["epoch"])


def network_scores(model, scans, regions, refine_iterations, remove_phase_ramp: bool = False
                   ) -> tuple[dict, dict]:
    """Scores of the network on every scan and after K solver iterations from its output.

    Returns ``(rows, curves)``: ``curves`` holds the per-iteration history (with scores) of the
    longest refinement of each scan.
    """
    from ptycho.refine import RefineOptions
    from ptycho.workflows import inference

    out, curves = {}, {}
    for name, scan in scans.items():
        started = time.perf_counter()
        result = inference.reconstruct(model, scan, stitch_weight="probe")
        stitched = result.stitched
        out[name] = {**score(stitched.object, stitched.x0_px, stitched.y0_px, stitched.weight,
                             scan, regions[name], remove_phase_ramp), "infer_s": time.perf_counter() - started}
        for iterations in refine_iterations:
            refined = inference.refine_reconstruction(
                result, scan, RefineOptions(iterations=iterations), probe=model.probe)
            out[f"{name} + refine {iterations}"] = {
                **score(refined.object, refined.x0_px, refined.y0_px, refined.weight, scan,
                        regions[name], remove_phase_ramp), "solver_s": refined.history["time_s"][-1]}
        if refine_iterations:
            # the per-iteration curve in a run of its own: scoring between iterations slows the
            # solver's next iteration (caches, thread pools), which would bias solver_s above
            def on_iteration(k, snapshot, name=name, scan=scan):
                return score(snapshot.object, snapshot.x0_px, snapshot.y0_px, snapshot.weight,
                             scan, regions[name], remove_phase_ramp)

            curves[name] = inference.refine_reconstruction(
                result, scan, RefineOptions(iterations=max(refine_iterations)),
                probe=model.probe, on_iteration=on_iteration).history
    return out, curves


def adapted_scores(model, scans, regions, epochs: int, remove_phase_ramp: bool = False) -> dict:
    """The network fine-tuned for ``epochs`` on the ``new`` scan (infer --adapt-epochs)."""
    from ptycho.config.config import ExecutionConfig
    from ptycho.workflows import inference
    from ptycho.workflows.adaptation import adapt

    scan = scans["new"]
    with tempfile.TemporaryDirectory() as tmp:
        adapted = adapt(model, scan, epochs, output_dir=tmp,
                        execution=ExecutionConfig(progress_bar=False, logger="none"))
    stitched = inference.reconstruct(adapted.model, scan, stitch_weight="probe").stitched
    return {f"new + adapt {epochs} epochs": {
        **score(stitched.object, stitched.x0_px, stitched.y0_px, stitched.weight, scan,
                regions["new"], remove_phase_ramp), "adapt_s": adapted.seconds}}


def bench_network(scans, regions, args, label="network", model_fields=None, **fields) -> dict:
    """Network rows; ``fields`` (TrainingConfig) or ``model_fields`` (ModelConfig) mark a variant
    recipe (no adaptation rows), ``args.loss`` picks the data term of every PINN training."""
    out = {"rows": {}, "curves": {}}
    variant = bool(fields or model_fields)
    supervised = (model_fields or {}).get("model_type") == "supervised"
    if args.loss != "nll" and not supervised:
        label = f"{label}, {args.loss} loss"
    if args.gridsize != 1:
        label = f"{label}, gridsize {args.gridsize}"
    model_fields = {"gridsize": args.gridsize, **(model_fields or {})}
    loss = {} if supervised else LOSSES[args.loss]
    for backend, architecture, epochs in itertools.product(args.backends, args.architectures,
                                                            args.epochs):
        per_scan: dict[str, list] = {}
        for seed in args.train_seeds:
            model, seconds, done = train_model(scans["train"], backend, architecture,
                                               epochs, seed, model_fields, **fields, **loss)
            rows, curves = network_scores(model, scans, regions, args.refine_after,
                                          args.remove_phase_ramp)
            if args.adapt_epochs and not variant:
                rows.update(adapted_scores(model, scans, regions, args.adapt_epochs,
                                           args.remove_phase_ramp))
            for key, row in rows.items():
                per_scan.setdefault(key, []).append({**row, "train_s": seconds,
                                                     "epochs_run": float(done)})
            for key, history in curves.items():
                out["curves"][f"{key}: refine from {label} {backend} {architecture}, "
                              f"{epochs} epochs, seed {seed}"] = history
        for key, runs in per_scan.items():
            name = f"{key}: {label} {backend} {architecture}, {epochs} epochs"
            out["rows"][name] = worst_and_median(runs)
            print(f"[{label}] {name}: {out['rows'][name]}", file=sys.stderr, flush=True)
    return out


def bench_targets(scans, regions, args) -> dict:
    out = {"rows": {}, "curves": {}}
    for weight in args.target_weights:
        label = f"targets refine:{args.target_iterations}" + (
            f" weight {weight:g}" if weight else "")
        part = bench_network(scans, regions, argparse.Namespace(
                                 **{**vars(args), "architectures": args.target_architectures}),
                             label=label,
                             targets=f"refine:{args.target_iterations}",
                             realspace_mae_weight=weight)
        for key in out:
            out[key].update(part[key])
    return out


def bench_ceiling(scans, regions, args) -> dict:
    """The generator trained on the training scan's ground truth (``model_type='supervised'``,
    early stopping off): what the architecture learns in the budget from perfect targets,
    a practical upper bound for the physics-loss recipes (not a strict one)."""
    return bench_network(scans, regions, args, label="supervised on the truth",
                         model_fields={"model_type": "supervised"},
                         early_stop_patience=max(args.epochs))


# -- report -------------------------------------------------------------------------------------

def markdown(report: dict) -> str:
    lines = [f"# ptychopinn quality benchmark {report['created']}", "",
             f"Scans: {json.dumps(report['scans'])}; common: {json.dumps(report['scan_common'])}.",
             "Scored on the union of the central N/2 boxes of the scan positions"
             + (", linear phase ramp removed" if report["args"].get("remove_phase_ramp") else "")
             + "; worst / median over seeds (solver minibatch seeds or training seeds).", "",
             "| row | amp SSIM worst / median | phase SSIM worst / median | amp PSNR dB median | "
             "phase PSNR dB median | seconds (median) |", "|---|---|---|---|---|---|"]
    for scan_name, rows in report["calibration"].items():
        for name, m in rows.items():
            lines.append(f"| {scan_name}: {name} | {m['amplitude_ssim']:.3f} | "
                         f"{m['phase_ssim']:.3f} | {m['amplitude_psnr_db']:.2f} | "
                         f"{m['phase_psnr_db']:.2f} | |")
    for section in ("refine", "network", "ceiling", "targets"):
        for name, m in report.get(section, {}).get("rows", {}).items():
            seconds = " + ".join(f"{m[k]:.1f} ({k[:-2]})" for k in (
                "train_s", "adapt_s", "solver_s", "infer_s") if k in m)
            lines.append(
                f"| {name} | {m['amplitude_ssim_worst']:.3f} / {m['amplitude_ssim_median']:.3f} | "
                f"{m['phase_ssim_worst']:.3f} / {m['phase_ssim_median']:.3f} | "
                f"{m['amplitude_psnr_db_median']:.2f} | {m['phase_psnr_db_median']:.2f} | "
                f"{seconds} |")
    lines += ["", "For reference (measured once on these two scans, scored the same way, in a "
              "scratch venv: benchmarks/results/lsqml-20261207.md): pty-chi 2.2.0 LSQML with its "
              "default options from a flat object, the true probe fixed, amplitude / phase SSIM "
              "on the training scan and on the new scan:", ""]
    lines += [f"- {k} epochs (about {k * LSQML_SECONDS_PER_EPOCH:.0f} s): {a} and {b}"
              for k, a, b in LSQML_REFERENCE]
    return "\n".join(lines) + "\n"


def figure(report: dict, path: Path) -> None:
    """SSIM against solver iterations and seconds, one row of panels per scan.

    One line per start (flat, or the network of a section/backend/architecture): the median
    over seeds at each iteration; amplitude solid, phase dashed; the scan's calibration rows
    (truth blurred by 3 and 1.5 px, amplitude) dotted.
    """
    import re

    from ptycho.figures import agg_figure, save_png

    groups: dict[tuple[str, str], list[dict]] = {}
    for section in ("refine", "network", "ceiling", "targets"):
        for name, history in report.get(section, {}).get("curves", {}).items():
            scan_name, _, start = name.partition(": ")
            start = re.sub(r", seed \d+$", "", start)
            groups.setdefault((scan_name, start), []).append(history)
    if not groups:
        return
    scan_names = sorted({scan for scan, _ in groups}, key=list(SCANS).index)
    fig = agg_figure((12, 4.2 * len(scan_names)))
    fig.subplots_adjust(left=0.06, right=0.7, top=0.93, bottom=0.08, hspace=0.3)
    colours = {}
    for row, scan_name in enumerate(scan_names):
        axes = [fig.add_subplot(len(scan_names), 2, 2 * row + i + 1) for i in range(2)]
        for (group_scan, start), histories in groups.items():
            if group_scan != scan_name:
                continue
            colour = colours.setdefault(start, f"C{len(colours) % 10}")
            length = min(len(h["iteration"]) for h in histories)
            for axis, x_key in zip(axes, ("iteration", "time_s")):
                x = np.median([h[x_key][:length] for h in histories], axis=0)
                for component, style in (("amplitude", "-"), ("phase", "--")):
                    y = np.median([h[f"{component}_ssim"][:length] for h in histories], axis=0)
                    axis.plot(x, y, style, color=colour,
                              label=f"{start}, {component}" if axis is axes[0] else None)
        for name, metrics in report["calibration"].get(scan_name, {}).items():
            if "blurred" in name:
                for axis in axes:
                    axis.axhline(metrics["amplitude_ssim"], color="gray", lw=0.8, ls=":")
        for axis, label in zip(axes, ("solver iterations", "solver seconds")):
            axis.set_xlabel(label)
            axis.set_ylabel(f"SSIM ({scan_name} scan)")
            axis.grid(alpha=0.3)
        axes[1].legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="upper left",
                       bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("ptycho.refine from a flat object and from network outputs (median over seeds; "
                 "dotted: truth blurred by 3 / 1.5 px, amplitude)", fontsize=10)
    save_png(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=["refine", "network", "targets"],
                        choices=["refine", "network", "ceiling", "targets"])
    parser.add_argument("--iterations", type=int, nargs="+", default=[4, 8, 20, 40],
                        help="solver iterations from a flat object")
    parser.add_argument("--solver-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backends", nargs="+", default=["pytorch"],
                        choices=["pytorch", "tensorflow"])
    parser.add_argument("--architectures", nargs="+", default=["cnn", "unet"],
                        choices=["cnn", "unet", "resnet", "ffno"])
    parser.add_argument("--epochs", type=int, nargs="+", default=[10],
                        help="training epochs of the network rows")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--refine-after", type=int, nargs="*", default=[8, 20],
                        help="solver iterations run from the network's output")
    parser.add_argument("--adapt-epochs", type=int, default=3,
                        help="test-time adaptation epochs on the new scan (network rows; 0: off)")
    parser.add_argument("--target-iterations", type=int, default=20)
    parser.add_argument("--target-architectures", nargs="+", default=["cnn"],
                        choices=["cnn", "unet", "resnet", "ffno"])
    parser.add_argument("--target-weights", type=float, nargs="+", default=[0.0],
                        help="realspace_mae_weight of the targets rows (0: the default weight)")
    parser.add_argument("--loss", choices=list(LOSSES), default="nll",
                        help="data term of the network rows' training (default: nll, the "
                             "Poisson NLL; amplitude-mae: mae_weight 1, nll_weight 0)")
    parser.add_argument("--gridsize", type=int, default=1,
                        help="gridsize of every network training (ModelConfig.gridsize; 2: "
                             "groups of 4 neighbours with the object_big overlap constraint, "
                             "about 1.6x the time per epoch of gridsize 1 on this CPU)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--figure-from", type=Path, metavar="JSON",
                        help="only redraw the figure of an earlier result file")
    parser.add_argument("--remove-phase-ramp", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="score every row (calibration rows too) with the linear phase "
                             "ramp removed (ptycho.evaluation remove_phase_ramp; default); "
                             "--no-remove-phase-ramp keeps it")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one seed, few iterations and epochs")
    args = parser.parse_args(argv)
    if args.figure_from:
        figure(json.loads(args.figure_from.read_text()), args.figure_from.with_suffix(".png"))
        return 0
    if args.quick:
        args.iterations, args.solver_seeds, args.epochs = [2], [0], [1]
        args.train_seeds, args.refine_after, args.target_iterations = [42], [2], 2
        args.architectures, args.adapt_epochs = ["cnn"], 1

    import torch

    torch.set_num_threads(torch.get_num_threads())
    started = time.perf_counter()
    scans = make_scans()
    regions = {name: scored_region(scan) for name, scan in scans.items()}
    report = {"created": utc_created(),
              "scans": SCANS, "scan_common": SCAN_COMMON, "args": {
                  k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "calibration": {name: calibration(scan, regions[name], args.remove_phase_ramp)
                              for name, scan in scans.items()}}
    sections = {"refine": bench_refine, "network": bench_network, "ceiling": bench_ceiling,
                "targets": bench_targets}
    for name in args.sections:
        report[name] = sections[name](scans, regions, args)
    report["total_s"] = time.perf_counter() - started
    base = write_record(args.out, "quality", utc_stamp(), report, markdown(report))
    figure(report, base.with_suffix(".png"))
    print(markdown(report))
    print(f"results: {base}.json, .md, .png ({report['total_s']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
