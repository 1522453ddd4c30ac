"""``make bench``: speed, memory and quality figures of ptychopinn on this machine.

Writes ``benchmarks/results/<UTC timestamp>.json`` and ``.md`` (a markdown table) and prints the
table. Every figure is a median over repeats, measured in this one run, so ratios between rows
are meaningful on a shared, noisy machine; absolute numbers are not.

Run ``python benchmarks/run.py --help`` for options (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def gemm_flops(repeats: int, n: int = 2048) -> dict:
    """float32 GEMM FLOP/s with NumPy and with torch: the machine's reference peak.

    Best of ``max(repeats, 8)`` products of two n x n matrices (a peak is a best case; the
    median would count the moments another process took the cores).
    """
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)

    def best_rate(fn) -> float:
        fn()
        times = []
        for _ in range(max(repeats, 8)):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return 2 * n ** 3 / min(times) / 1e9

    result = {"numpy_gflops": best_rate(lambda: a @ b)}
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        result["torch_gflops"] = best_rate(lambda: ta @ tb)
    except ImportError:
        pass
    result["peak_gflops"] = max(result.values())
    return result


def model_flops_per_pattern(N: int, gridsize: int) -> float:
    """Multiply-adds x 2 of every convolution of the cnn generator for one sample (analytic).

    Counted on the reference form of the architecture (a 3x3 convolution of each upsampled
    map); ``network.conv_after_upsample`` performs the same number of operations.
    """
    import torch
    from torch.nn import functional as F

    from ptycho import physics
    from ptycho.backends.pytorch import network
    from ptycho.backends.pytorch.model import PtychoPINN
    from ptycho.config.config import ModelConfig

    model = PtychoPINN(ModelConfig(N=N, gridsize=gridsize), physics.default_probe(N), 10.0)
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        total += 2 * output.numel() * module.in_channels * kernel

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, torch.nn.Conv2d)]
    fused = network.conv_after_upsample
    network.conv_after_upsample = lambda x, conv: conv(F.interpolate(x, scale_factor=2))
    try:
        with torch.no_grad():
            model.generator(torch.zeros(1, gridsize ** 2, N, N))
    finally:
        network.conv_after_upsample = fused
        for handle in handles:
            handle.remove()
    return float(total)


def simulated_scan(n_positions: int, N: int, seed: int = 0):
    from ptycho.data.simulation import simulate

    side = int(np.ceil(np.sqrt(n_positions)))
    size = N + 8 + 6 * side
    return simulate(object_kind="lines", N=N, object_size=size, step=6.0,
                    n_positions=n_positions, nphotons=1e6, seed=seed).scan


def train_rate(backend: str, grouped, epochs: int, batch_size: int, execution):
    """Train on ``grouped`` for 1 + ``epochs`` epochs; return ``(model, patterns/s)``.

    The rate is the number of groups over the median wall time of epochs 2..E (the first
    includes set-up, tracing and warm-up).
    """
    from ptycho import physics
    from ptycho.backends import load_backend
    from ptycho.config.config import ModelConfig, TrainingConfig

    scan, N = grouped.scan, grouped.scan.N
    config = TrainingConfig(model=ModelConfig(N=N, gridsize=grouped.gridsize),
                            nepochs=1 + epochs, batch_size=batch_size, validation_fraction=0.0,
                            early_stop_patience=100, plateau_patience=100, backend=backend)
    probe = physics.normalize_probe(scan.probe)
    scale = physics.intensity_scale(scan.mean_photons_per_pattern(), N)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_backend(backend).train_model(grouped, None, probe, scale, config, execution,
                                                  Path(tmp))
    return model, len(grouped) / statistics.median(model.history["epoch_time_s"][1:])


def predict_seconds(model, grouped, batch_size: int, repeats: int) -> float:
    """Median wall time of ``model.predict`` of every group of ``grouped`` (whole patches),
    after a one-batch warm-up (tf.function tracing)."""
    x = grouped.X() * np.float32(model.intensity_scale)
    relative = grouped.coords()["relative"]
    model.predict([x[:batch_size], relative[:batch_size]], batch_size=batch_size)
    return median_time(lambda: model.predict([x, relative], batch_size=batch_size), repeats)


def bench_backend(backend: str, N: int, gridsize: int, args) -> dict:
    """Training and inference throughput of one backend/configuration (run in a subprocess).

    Training: :func:`train_rate` (batch 16). Predict: whole patches, the model's full FLOPs.
    Predict + stitch: the inference pipeline (``workflows.inference.reconstruct`` with its
    default probe weighting, which asks only for the stitched centre, N/2 pixels).
    """
    from ptycho.config.config import DEFAULT_PREDICT_BATCH, ExecutionConfig
    from ptycho.data.grouping import GroupedData
    from ptycho.workflows.inference import reconstruct

    gemm_before = gemm_flops(args.repeats)["peak_gflops"]
    grouped = GroupedData.from_scan(simulated_scan(args.train_positions, N), gridsize)
    execution = ExecutionConfig(progress_bar=False, logger="none", accelerator="cpu")
    model, rate = train_rate(backend, grouped, args.epochs, 16, execution)

    infer_scan = simulated_scan(args.infer_positions, N, seed=1)
    infer_grouped = GroupedData.from_scan(infer_scan, gridsize)
    predict_s = predict_seconds(model, infer_grouped, DEFAULT_PREDICT_BATCH, args.repeats)
    head = slice(0, DEFAULT_PREDICT_BATCH)  # warm-up of reconstruct's central-only predict
    # (the default probe weighting stitches the central N/2 box)
    model.predict([infer_grouped.X(head) * np.float32(model.intensity_scale),
                   infer_grouped.coords(head)["relative"]], central_px=N // 2)
    stitch_s = median_time(lambda: reconstruct(model, infer_scan), args.repeats)
    flops = model_flops_per_pattern(N, gridsize)
    n = len(infer_grouped)
    # the reference peak measured in this process, before and after (same load as the figures)
    gemm = max(gemm_before, gemm_flops(args.repeats)["peak_gflops"])
    return {
        "backend": backend, "N": N, "gridsize": gridsize, "gemm_gflops": gemm,
        "train_patterns_per_s": rate,
        "predict_patterns_per_s": n / predict_s,
        "predict_stitch_patterns_per_s": n / stitch_s,
        "forward_gflop_per_pattern": flops / 1e9,
        "predict_gflops": flops * n / predict_s / 1e9,
        "train_gflops": 3 * flops * rate / 1e9,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_subprocess_json(argv: list[str]) -> dict:
    result = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def command_wall_s(argv: list[str], repeats: int) -> float:
    return median_time(lambda: subprocess.run(argv, capture_output=True, check=True), repeats)


def bench_cli(args, tmp: Path) -> dict:
    """``--help`` and ``import ptycho`` wall times; end-to-end ``ptychopinn infer`` on 512 positions.

    ``infer_512_<backend>_s``: a scan without ground truth (reconstruction, images, npz);
    ``..._with_metrics_s``: the same scan with ``objectGuess`` (adds metrics.json and
    comparison.png).
    """
    python = sys.executable
    out = {
        "help_s": command_wall_s([python, "-m", "ptycho.cli.main", "--help"], args.repeats),
        "import_s": command_wall_s([python, "-c", "import ptycho"], args.repeats),
    }
    from ptycho.data.npz import write_scan_npz

    scan_path = tmp / "scan512.npz"
    scan = simulated_scan(512, 64, seed=2)
    write_scan_npz(scan_path, scan)
    measured_path = tmp / "scan512_measured.npz"  # as from an instrument: no objectGuess
    write_scan_npz(measured_path, dataclasses.replace(scan, object_guess=None))
    for backend in args.backends:
        model_dir = tmp / f"model_{backend}"
        subprocess.run([python, "-m", "ptycho.cli.main", "train", "--train_data_file", scan_path,
                        "--output_dir", model_dir, "--nepochs", "1", "--n_groups", "64",
                        "--backend", backend, "--quiet", "--logger", "none"],
                       capture_output=True, check=True)
        for label, path in (("", measured_path), ("_with_metrics", scan_path)):
            argv = [python, "-m", "ptycho.cli.main", "infer", "--model_path", str(model_dir),
                    "--test_data", str(path), "--output_dir", str(tmp / f"out_{backend}{label}")]
            out[f"infer_512_{backend}{label}_s"] = command_wall_s(argv, args.repeats)
    return out


def bench_stitch_group(args) -> dict:
    """Stitching and gridsize-2 grouping of n positions on a dense raster (4 px step, +-1 px
    jitter: neighbouring 20 px crops overlap as in a real scan)."""
    from ptycho.data.grouping import group_positions
    from ptycho.stitching import stitch_patches

    rng = np.random.default_rng(0)
    out = {}
    for n in args.stitch_sizes:
        side = int(np.ceil(np.sqrt(n)))
        x = (np.arange(n) % side) * 4.0 + rng.uniform(-1, 1, n)
        y = (np.arange(n) // side) * 4.0 + rng.uniform(-1, 1, n)
        patches = np.broadcast_to((rng.random((64, 64)) + 1j).astype(np.complex64), (n, 64, 64))
        out[f"stitch_{n}_s"] = median_time(
            lambda: stitch_patches(patches, np.column_stack([x, y])), args.repeats)
        out[f"group_gs2_{n}_s"] = median_time(lambda: group_positions(x, y, 2), args.repeats)
    return out


def bench_quality(args) -> dict:
    """PSNR/SSIM/FRC after a fixed training budget, beside the speed figures and a flat object.

    The demo's training scan (``ptycho.demo.DEMO_SCAN``, seed 7; also the scan of
    ``tests/torch/test_quality_torch.py``): grf:8 object, defocused probe, N=64,
    529 positions, 1e6 photons per pattern; default training settings.
    """
    from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
    from ptycho.data.simulation import simulate
    from ptycho.demo import DEMO_SCAN
    from ptycho.evaluation import comparison_region, evaluate_reconstruction, flat_baseline_metrics
    from ptycho.workflows import inference, training

    scan = simulate(**DEMO_SCAN, seed=7).scan
    out = {}
    for backend in args.backends:
        config = TrainingConfig(model=ModelConfig(N=64), nepochs=args.quality_epochs,
                                backend=backend)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            config.output_dir = Path(tmp)
            result = training.train(config, ExecutionConfig(progress_bar=False, logger="none"),
                                    train_scan=scan, write_outputs=False)
        train_s = time.perf_counter() - started
        for weighting in ("crop", "probe"):  # the flat object: scored on the last one's pixels
            stitched = inference.reconstruct(result.model, scan, stitch_weight=weighting).stitched
            where = comparison_region(stitched, scan)
            metrics = evaluate_reconstruction(stitched.object, stitched.x0_px, stitched.y0_px,
                                              scan.object_guess, **where)
            label = f"{backend}, --stitch-weight {weighting}"
            out[label] = {"epochs": len(result.history["epoch"]),
                          "positions": scan.n_positions, "train_s": train_s, **metrics}
        if "flat object" not in out:  # the same pixels for every backend: score it once
            out["flat object"] = {"epochs": 0, "positions": scan.n_positions, "train_s": 0.0,
                                  **flat_baseline_metrics(stitched.object, stitched.x0_px,
                                                          stitched.y0_px, scan.object_guess,
                                                          **where)}
    return out


def markdown(report: dict) -> str:
    peak = report["gemm"]["peak_gflops"]
    lines = [f"# ptychopinn benchmark {report['created']}", "",
             f"Machine: {report['machine']}; float32 GEMM peak at the start {peak:.1f} GFLOP/s "
             f"(numpy {report['gemm']['numpy_gflops']:.1f}, torch "
             f"{report['gemm'].get('torch_gflops', float('nan')):.1f}).", "",
             "% GEMM: against the float32 GEMM peak measured in the same process just before and "
             "after the row (column GEMM).", "",
             "| backend | N | gs | train pat/s | predict pat/s | predict+stitch pat/s | "
             "GFLOP/pattern | GEMM GFLOP/s | predict % GEMM | train % GEMM | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["models"]:
        if "error" in row:
            lines.append(f"| {row.get('backend')} | {row.get('N')} | {row.get('gridsize')} | "
                         f"error: {row['error']} ||||||||")
            continue
        lines.append(
            f"| {row['backend']} | {row['N']} | {row['gridsize']} | "
            f"{row['train_patterns_per_s']:.1f} | {row['predict_patterns_per_s']:.1f} | "
            f"{row['predict_stitch_patterns_per_s']:.1f} | {row['forward_gflop_per_pattern']:.2f} | "
            f"{row['gemm_gflops']:.0f} | {100 * row['predict_gflops'] / row['gemm_gflops']:.0f} % | "
            f"{100 * row['train_gflops'] / row['gemm_gflops']:.0f} % | "
            f"{row['peak_rss_mib']:.0f} |")
    lines += ["", "| section | wall s |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in report.get("section_s", {}).items()]
    lines += ["", "| command | wall s |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in report["cli"].items()]
    lines += ["", "| stitching / grouping | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3g} |" for k, v in report["stitch_group"].items()]
    if report.get("quality"):
        lines += ["", "| quality (grf:8, 529 positions) | epochs | train s | amp PSNR dB | amp SSIM | "
                  "phase PSNR dB | phase SSIM | amp FRC50 px |", "|---|---|---|---|---|---|---|---|"]
        for backend, q in report["quality"].items():
            lines.append(f"| {backend} | {q['epochs']} | {q['train_s']:.0f} | "
                         f"{q['amplitude']['psnr_db']:.2f} | {q['amplitude']['ssim']:.3f} | "
                         f"{q['phase']['psnr_db']:.2f} | {q['phase']['ssim']:.3f} | "
                         f"{q['amplitude']['frc50_px']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=None,
                        help="backends to measure (default: every installed one)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128], help="N values")
    parser.add_argument("--gridsizes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3,
                        help="timed training epochs (after one warm-up epoch)")
    parser.add_argument("--train-positions", type=int, default=96)
    parser.add_argument("--infer-positions", type=int, default=256)
    parser.add_argument("--stitch-sizes", nargs="+", type=int, default=[1000, 10000, 100000])
    parser.add_argument("--quality-epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for <timestamp>.json and .md (default: benchmarks/results)")
    parser.add_argument("--one", nargs=3, metavar=("BACKEND", "N", "GRIDSIZE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.gridsizes, args.repeats, args.epochs = [64], [1], 1, 1
        args.train_positions, args.infer_positions, args.quality_epochs = 32, 64, 1
        args.stitch_sizes = [1000]
    if args.backends is None:
        import importlib.util

        args.backends = [b for b, m in (("pytorch", "torch"), ("tensorflow", "tensorflow"))
                         if importlib.util.find_spec(m)]
    if args.one:
        backend, n, gridsize = args.one
        print(json.dumps(bench_backend(backend, int(n), int(gridsize), args)))
        return 0

    sub_args = ["--repeats", str(args.repeats), "--epochs", str(args.epochs),
                "--train-positions", str(args.train_positions),
                "--infer-positions", str(args.infer_positions)]
    report = {
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                   f"Python {platform.python_version()}",
        "gemm": gemm_flops(args.repeats),
        "models": [], "cli": {}, "stitch_group": {}, "quality": {}, "section_s": {},
    }
    stamp = report["created"].replace(":", "").replace("-", "").replace("+0000", "Z")

    def save() -> str:
        """Write the JSON and markdown after every section, so a partial run keeps its figures."""
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{stamp}.json").write_text(json.dumps(report, indent=2))
        table = markdown(report)
        (args.out / f"{stamp}.md").write_text(table)
        return table

    def section(name: str, fn) -> None:
        print(f"measuring {name} ...", file=sys.stderr)
        started = time.perf_counter()
        fn()
        report["section_s"][name] = time.perf_counter() - started
        save()

    def models() -> None:
        for backend in args.backends:
            for n in args.sizes:
                for gridsize in args.gridsizes:
                    row = run_subprocess_json(["--one", backend, str(n), str(gridsize), *sub_args])
                    row.setdefault("backend", backend)
                    row.setdefault("N", n)
                    row.setdefault("gridsize", gridsize)
                    report["models"].append(row)
                    save()

    def cli() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            report["cli"] = bench_cli(args, Path(tmp))

    section("models", models)
    section("command line", cli)
    section("stitching and grouping", lambda: report["stitch_group"].update(bench_stitch_group(args)))
    section("quality", lambda: report["quality"].update(bench_quality(args)))
    print(save())
    print(f"results: {args.out / stamp}.json and .md", file=sys.stderr)
    return 0

if __name__ == "__main__":
    sys.exit(main())
