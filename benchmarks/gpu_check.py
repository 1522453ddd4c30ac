"""GPU check (issue #8): training and inference patterns/s on one GPU, per backend and N.

Run on a machine with a CUDA GPU, from the repository root, without installing the package::

    PYTHONPATH=src python3 benchmarks/gpu_check.py --out DIR

For every installed backend that sees a GPU, N in {64, 128} and gridsize 1 and 2 (and, for
PyTorch, float32 and ``bf16-mixed`` precision) it trains on a simulated scan and reports the
training rate (median of the epochs after the first, which includes set-up and tracing) and
the predict rate (whole patches, median of repeats), beside the dense float32/bfloat16 matrix
product rate measured on the same GPU. Writes ``gpu-<UTC timestamp>.json`` and ``.md`` to
``--out`` and prints the table. ``--accelerator cpu --quick`` is a smoke run on any machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

# benchmarks/ is on sys.path when this file runs as a script
from run import RESULTS, model_flops_per_pattern, predict_seconds, simulated_scan, train_rate


def matmul_tflops(dtype_name: str, device: str, n: int = 8192, repeats: int = 5) -> float:
    """Best rate of ``n^3`` matrix products in torch on ``device`` (TF32 off for float32)."""
    import torch

    dtype = getattr(torch, dtype_name)
    if device == "cpu":
        n = min(n, 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # a true float32 reference
    best = float("inf")
    try:
        for _ in range(repeats + 1):
            if device != "cpu":
                torch.cuda.synchronize()
            started = time.perf_counter()
            a @ b
            if device != "cpu":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    return 2 * n ** 3 / best / 1e12


def gpu_backends(accelerator: str) -> tuple[list[str], dict[str, str]]:
    """Backends to measure and, for the others, why not."""
    import importlib.util

    backends, skipped = [], {}
    if importlib.util.find_spec("torch") is None:
        skipped["pytorch"] = "torch is not installed"
    else:
        import torch

        if accelerator == "gpu" and not torch.cuda.is_available():
            skipped["pytorch"] = "torch sees no CUDA GPU"
        else:
            backends.append("pytorch")
    if importlib.util.find_spec("tensorflow") is None:
        skipped["tensorflow"] = "tensorflow is not installed on this machine"
    else:
        import tensorflow as tf

        if accelerator == "gpu" and not tf.config.list_physical_devices("GPU"):
            skipped["tensorflow"] = "tensorflow sees no GPU"
        else:
            backends.append("tensorflow")
    return backends, skipped


def measure(backend: str, N: int, gridsize: int, precision: str, scans: dict, args) -> dict:
    """Training and predict patterns/s of one configuration."""
    from ptycho.config.config import ExecutionConfig
    from ptycho.data.grouping import GroupedData

    grouped = GroupedData.from_scan(scans[N], gridsize)
    execution = ExecutionConfig(progress_bar=False, logger="none", accelerator=args.accelerator,
                                devices=1, precision=precision)
    model, rate = train_rate(backend, grouped, args.epochs, args.train_batch, execution)
    predict_s = predict_seconds(model, grouped, args.predict_batch, args.repeats)
    flops = model_flops_per_pattern(N, gridsize)
    return {"backend": backend, "N": N, "gridsize": gridsize, "precision": precision,
            "train_batch": args.train_batch, "predict_batch": args.predict_batch,
            "patterns": len(grouped), "train_patterns_per_s": rate,
            "predict_patterns_per_s": len(grouped) / predict_s,
            "train_tflops": 3 * flops * rate / 1e12,
            "predict_tflops": flops * len(grouped) / predict_s / 1e12}


def markdown(report: dict) -> str:
    ref = report["matmul_tflops"]
    lines = [f"# ptychopinn GPU check {report['created']}", "",
             f"Device: {report['device']}. Dense matrix product (torch, TF32 off): float32 "
             f"{ref['float32']:.1f} TFLOP/s, bfloat16 {ref['bfloat16']:.1f} TFLOP/s.", ""]
    lines += [f"- {backend}: not measured ({why})" for backend, why in report["skipped"].items()]
    lines += ["", "| backend | N | gs | precision | train pat/s | predict pat/s | train TFLOP/s | "
              "predict TFLOP/s |", "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        if "error" in row:
            lines.append(f"| {row['backend']} | {row['N']} | {row['gridsize']} | "
                         f"{row['precision']} | error: {row['error']} ||||")
            continue
        lines.append(f"| {row['backend']} | {row['N']} | {row['gridsize']} | {row['precision']} | "
                     f"{row['train_patterns_per_s']:.0f} | {row['predict_patterns_per_s']:.0f} | "
                     f"{row['train_tflops']:.1f} | {row['predict_tflops']:.1f} |")
    batch = report["rows"][0] if report["rows"] else {}
    lines += ["", f"Training batch {batch.get('train_batch')}, predict batch "
              f"{batch.get('predict_batch')}; {report['positions']} simulated positions per scan. "
              "The precision column applies to training; predict runs in float32 in every row."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument("--accelerator", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--gridsizes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--positions", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the first")
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--predict-batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.gridsizes, args.positions, args.epochs = [64], [1], 64, 1
        args.train_batch, args.predict_batch, args.repeats = 16, 16, 1

    backends, skipped = gpu_backends(args.accelerator)
    device = f"{platform.processor() or platform.machine()} (CPU)"
    torch_device = "cpu"
    if "pytorch" in backends or args.accelerator == "gpu":
        import torch

        if args.accelerator == "gpu" and torch.cuda.is_available():
            device, torch_device = torch.cuda.get_device_name(0), "cuda"
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    report = {"created": created.isoformat(), "device": device, "skipped": skipped,
              "positions": args.positions, "rows": [],
              "matmul_tflops": {name: matmul_tflops(name, torch_device)
                                for name in ("float32", "bfloat16")}}
    scans = {n: simulated_scan(args.positions, n) for n in args.sizes}
    for backend in backends:
        precisions = ("32-true", "bf16-mixed") if backend == "pytorch" else ("32-true",)
        for n in args.sizes:
            for gridsize in args.gridsizes:
                for precision in precisions:
                    print(f"measuring {backend} N={n} gridsize={gridsize} {precision} ...",
                          file=sys.stderr, flush=True)
                    try:
                        row = measure(backend, n, gridsize, precision, scans, args)
                    except Exception as exc:  # report the row's failure, go on with the others
                        row = {"backend": backend, "N": n, "gridsize": gridsize,
                               "precision": precision,
                               "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                    report["rows"].append(row)
    stamp = created.strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"gpu-{stamp}.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (args.out / f"gpu-{stamp}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
