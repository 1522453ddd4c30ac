"""``make demo``: simulate two scans, train on one, reconstruct both, print the metrics.

Both scans use the defocused (complex, ringed) probe and different random 'grf:8' objects
(Gaussian random fields, 8 px correlation length): the model is trained on the first and then
reconstructs the second, which it has never seen. Patches are stitched with probe weighting
(the default, ``--stitch-weight probe``). Twelve epochs on the CPU give a recognisable but soft
reconstruction; quality keeps improving with more epochs (``--nepochs``). Each metrics table
ends with the score of a flat object, the floor a reconstruction must beat. Last, the iterative
solver (``ptychopinn refine``, 20 iterations from a flat object, about a second) reconstructs
the test scan for comparison.

Run as ``python -m ptycho.demo --out outputs/demo``. Everything it writes lands in the output
folder::

    train_scan.npz, test_scan.npz         simulated scans with ground truth (objectGuess)
    model/                                wts.h5.zip, history.csv, loss_curve.png
    train_reconstruction/, test_reconstruction/
                                          reconstruction.npz, reconstructed_*.png,
                                          metrics.json, comparison.png
    test_refined/                         the solver's reconstruction.npz, images,
                                          refine_history.csv, metrics.json, comparison.png
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

#: Iterations of the iterative solver (``ptychopinn refine``) on the test scan, for comparison.
REFINE_ITERATIONS = 20

#: The demo's scans (``ptycho.data.simulation.simulate`` arguments; the training scan uses the
#: demo seed, the test scan seed + 1). The bench's quality section and the PyTorch quality test
#: reconstruct the training scan of seed 7.
DEMO_SCAN = dict(object_kind="grf:8", probe_kind="defocused", scan_kind="raster", N=64,
                 object_size=224, step=7.0, nphotons=1e6)


def run_demo(out: Path, *, nepochs: int, backend: str, seed: int = 7) -> dict:
    """Simulate, train, reconstruct and evaluate; return the metrics of both reconstructions."""
    from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
    from ptycho.data.simulation import simulate, write_simulation
    from ptycho.evaluation import comparison_region, flat_baseline_metrics, format_metrics
    from ptycho.refine import RefineOptions, refine
    from ptycho.workflows import inference, training
    from ptycho.workflows.refinement import write_refine_outputs

    out.mkdir(parents=True, exist_ok=True)
    scans = {}
    for name, scan_seed in (("train", seed), ("test", seed + 1)):
        simulation = simulate(**DEMO_SCAN, seed=scan_seed)
        path = out / f"{name}_scan.npz"
        write_simulation(path, simulation)
        scans[name] = simulation.scan
        scan = simulation.scan
        print(f"[demo] simulated {path}: {scan.n_positions} positions, N={scan.N}, "
              f"{scan.mean_photons_per_pattern():.3g} photons/pattern, "
              f"object '{DEMO_SCAN['object_kind']}'")

    config = TrainingConfig(model=ModelConfig(N=64, gridsize=1), nepochs=nepochs, batch_size=16,
                            output_dir=out / "model", backend=backend)
    print(f"[demo] training a {backend} model for up to {nepochs} epochs on the CPU "
          "(a few minutes)...")
    started = time.perf_counter()
    result = training.train(config, ExecutionConfig(logger="csv"), train_scan=scans["train"])
    print(f"[demo] trained in {time.perf_counter() - started:.0f} s; model: {result.archive_path}")

    metrics = {}
    for name, scan in scans.items():
        started = time.perf_counter()
        recon = inference.reconstruct(result.model, scan)
        elapsed = time.perf_counter() - started
        folder = out / f"{name}_reconstruction"
        metrics[name] = inference.write_outputs(recon, folder, scan)
        print(f"\n[demo] {name} scan reconstructed in {elapsed:.2f} s -> {folder}")
        print(format_metrics(metrics[name]))
        stitched = recon.stitched
        flat = flat_baseline_metrics(stitched.object, stitched.x0_px, stitched.y0_px,
                                     scan.object_guess, **comparison_region(stitched, scan))
        print("[demo] a flat object would score: " + ", ".join(
            f"{c} PSNR {flat[c]['psnr_db']:.2f} dB, SSIM {flat[c]['ssim']:.3f}"
            for c in ("amplitude", "phase")))

    scan = scans["test"]
    refined = refine(scan, options=RefineOptions(iterations=REFINE_ITERATIONS))
    folder = out / "test_refined"
    metrics["test_refined"] = write_refine_outputs(refined, folder, scan)
    print(f"\n[demo] test scan reconstructed by the iterative solver from a flat object "
          f"({REFINE_ITERATIONS} iterations, {refined.history['time_s'][-1]:.1f} s) -> {folder}")
    print(format_metrics(metrics["test_refined"]))
    return metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptycho.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--nepochs", type=int, default=12, help="training epochs (default: 12)")
    parser.add_argument("--backend", choices=["pytorch", "tensorflow"], default="pytorch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    run_demo(args.out, nepochs=args.nepochs, backend=args.backend)
    print(f"\n[demo] done: outputs under {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
