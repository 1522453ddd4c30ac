"""``make bench-realistic``: reconstruction from realistic detector data (issue 15 acceptance).

One scan is simulated twice from the same object, positions, 2-mode probe (80 % / 20 %) and
Poisson draw (:func:`ptycho.data.sim_detector.simulate_realistic`): clean (square N x N
patterns, no defects, NPZ) and realistic (2N x 2N off-centre uint32 frames, beamstop, dead
pixels, module gaps, hot pixels, saturation; CXI). Both start from the same coherent probe
guess (the CXI's ``source_1/probe``, passed to the clean scan as its probe).

Readings, each reconstructed with the same budget by the iterative solver (``ptycho.refine``,
K iterations, probe refined) and by the PyTorch network (E epochs, probe trainable, and by
default ``targets='refine:T'``: the solver's T-iteration reconstruction as training target and
its refined probe, all modes, as the network's starting probe; one row per reading over
several training seeds, worst and median reported):

``clean``          the NPZ, ``--probe-modes 2``
``realistic``      the CXI read as ``--crop N --saturation LEVEL --probe-modes 2`` (the file's
                   mask; beam centre from the centre of mass of the mean frame)
``masks off``      the CXI without its mask dataset, no ``--saturation`` (``--crop N
                   --detector-centre ROW,COL``, the stated centre, so only the masks differ)
``1 mode``         the realistic reading with ``--probe-modes 1``

Scores: amplitude and phase PSNR and SSIM (``benchmarks/quality.py`` ``score``: sub-pixel
registration, global phase and amplitude scale removed, on the union of the central N/2 boxes
of the positions), also after removing the linear phase ramp (``remove_phase_ramp`` of
``ptycho.evaluation``: fitted on the scored pixels after registration), and the recovered mode
powers (percent of the total) against the truth (the network's: of its trained probe, which the
archive would hold). Calibration rows score a flat object and the blurred truth on the same
pixels (``quality.calibration``), the floor and the resolution scale of the PSNR and SSIM.

Writes ``benchmarks/results/realistic-<UTC timestamp>.json`` and ``.md``. Run
``python benchmarks/realistic.py --help``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import calibration, score, scored_region, train_model, utc_stamp, write_record

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: ``ptycho.data.sim_detector.simulate_realistic`` arguments of the benchmark scan.
SCAN = dict(N=64, object_kind="image:camera:astronaut", probe_kind="defocused",
            scan_kind="spiral", object_size=224, step=6.0, n_positions=500, nphotons=1e6,
            probe_modes=2, second_mode_power=0.2, seed=1)
READINGS = ("clean", "realistic", "masks off", "1 mode")
#: (score key, format) of the table columns.
METRICS = (("amplitude_psnr_db", ".2f"), ("phase_psnr_db", ".2f"), ("amplitude_ssim", ".3f"),
           ("phase_ssim", ".3f"))


def make_files(folder: Path, scan_args: dict) -> dict:
    """Write the clean NPZ and the realistic CXI (and its mask-less copy) into ``folder``;
    return the paths, the reading options of each reading and the truth."""
    from ptycho.data.npz import write_scan_npz
    from ptycho.data.reading import ReadOptions
    from ptycho.data.sim_detector import simulate_realistic, write_realistic_cxi
    from ptycho.physics import mode_powers

    realistic = simulate_realistic(**scan_args)
    n = realistic.N
    powers = mode_powers(realistic.true_probe)
    cxi = write_realistic_cxi(folder / "realistic.cxi", realistic)
    unmasked = write_realistic_cxi(folder / "unmasked.cxi", realistic)
    with h5py.File(unmasked, "r+") as handle:
        del handle["entry_1/instrument_1/detector_1/mask"]
    clean = realistic.clean.scan
    clean.probe, clean.probe_modes = realistic.probe_guess, None
    npz = folder / "clean.npz"
    write_scan_npz(npz, clean)
    level = realistic.saturation_counts
    return {
        "paths": {"clean": npz, "realistic": cxi, "masks off": unmasked, "1 mode": cxi},
        "options": {"clean": ReadOptions(),
                    "realistic": ReadOptions(crop_px=n, saturation_counts=level),
                    "masks off": ReadOptions(crop_px=n, centre_px=realistic.centre_px),
                    "1 mode": ReadOptions(crop_px=n, saturation_counts=level)},
        "modes": {"clean": 2, "realistic": 2, "masks off": 2, "1 mode": 1},
        "truth": clean.object_guess,
        "true_powers_pct": [float(p) for p in 100 * powers / powers.sum()],
        "dataset": {"frames": list(realistic.frames.shape), "dtype": str(realistic.frames.dtype),
                    "beam_centre_px": list(realistic.centre_px),
                    "beam_offset_px": list(realistic.defects.beam_offset_px),
                    "beamstop_radius_px": realistic.defects.beamstop_radius_px,
                    "dead_fraction": realistic.defects.dead_fraction,
                    "gap_width_px": realistic.defects.gap_width_px,
                    "hot_pixels": realistic.defects.hot_pixels,
                    "mask_fraction_frame": float(realistic.mask.mean()),
                    "saturation_counts": level,
                    "saturated_fraction_frames": float(np.mean(realistic.frames >= level)),
                    "object_pixel_nm": realistic.object_pixel_m * 1e9},
    }


def scores(obj, x0_px, y0_px, weight, scan) -> dict:
    """``score`` as it is and with the phase ramp removed (keys ``*_deramped``)."""
    region = scored_region(scan)
    plain = score(obj, x0_px, y0_px, weight, scan, region, remove_phase_ramp=False)
    flat = score(obj, x0_px, y0_px, weight, scan, region, remove_phase_ramp=True)
    return {**plain, **{f"{key}_deramped": value for key, value in flat.items()}}


def _powers_pct(probe) -> list[float]:
    from ptycho.physics import mode_powers

    powers = mode_powers(probe)
    return [float(p) for p in 100 * powers / powers.sum()]


def solver_row(scan, modes: int, iterations: int) -> dict:
    from ptycho.refine import RefineOptions, refine

    result = refine(scan, options=RefineOptions(iterations=iterations, refine_probe=True,
                                                probe_modes=modes))
    return {**scores(result.object, result.x0_px, result.y0_px, result.weight, scan),
            "seconds": result.history["time_s"][-1], "mode_powers_pct": _powers_pct(result.probe)}


def network_run(scan, modes: int, epochs: int, seed: int, target_iterations: int) -> dict:
    """One training (seed ``seed``; ``target_iterations`` > 0: ``targets='refine:T'``), scored
    on its own reconstruction of the training scan; ``seconds`` includes the solver targets."""
    from ptycho.workflows import inference

    fields = {"targets": f"refine:{target_iterations}"} if target_iterations else {}
    model, seconds, _ = train_model(scan, "pytorch", "cnn", epochs, seed,
                                    model_fields={"probe_modes": modes}, probe_trainable=True,
                                    **fields)
    stitched = inference.reconstruct(model, scan, stitch_weight="probe").stitched
    return {**scores(stitched.object, stitched.x0_px, stitched.y0_px, stitched.weight, scan),
            "seconds": seconds, "mode_powers_pct": _powers_pct(model.probe), "seed": seed}


def network_row(runs: list[dict]) -> dict:
    """The runs of several training seeds: every score's worst (lowest) and median under
    ``<key>_worst`` / ``<key>_median``, the median seconds, and the runs themselves."""
    row = {"runs": runs, "seconds": float(np.median([run["seconds"] for run in runs]))}
    for key, value in runs[0].items():
        if isinstance(value, float) and key != "seconds":
            values = [run[key] for run in runs]
            row[f"{key}_worst"], row[f"{key}_median"] = min(values), float(np.median(values))
    return row


def run(args) -> dict:
    from ptycho.data.io import read_scan

    scan_args = {**SCAN, "n_positions": args.positions, "seed": args.seed}
    report = {"scan": scan_args, "iterations": args.iterations, "epochs": args.epochs,
              "target_iterations": args.target_iterations, "train_seeds": args.train_seeds,
              "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), scan_args)
        report["dataset"] = files["dataset"]
        report["true_powers_pct"] = files["true_powers_pct"]
        clean = read_scan(files["paths"]["clean"], options=files["options"]["clean"])
        clean.object_guess = files["truth"]
        region = scored_region(clean)
        plain = calibration(clean, region, remove_phase_ramp=False)
        flat = calibration(clean, region, remove_phase_ramp=True)
        report["calibration"] = {name: {**plain[name], **{f"{key}_deramped": value for key, value
                                                          in flat[name].items()}}
                                 for name in plain}
        for name in args.readings:
            scan = read_scan(files["paths"][name], options=files["options"][name])
            scan.diffraction = np.asarray(scan.diffraction)
            scan.object_guess = files["truth"]
            modes = files["modes"][name]
            if "solver" in args.methods:
                row = solver_row(scan, modes, args.iterations)
                report["rows"][f"{name}: solver {args.iterations} it"] = row
                print(f"[solver] {name}: {row}", file=sys.stderr, flush=True)
            if "network" in args.methods:
                runs = []
                for seed in args.train_seeds:
                    runs.append(network_run(scan, modes, args.epochs, seed,
                                            args.target_iterations))
                    print(f"[network] {name} seed {seed}: {runs[-1]}", file=sys.stderr,
                          flush=True)
                targets = (f", targets refine:{args.target_iterations}"
                           if args.target_iterations else "")
                report["rows"][f"{name}: network {args.epochs} ep{targets}"] = network_row(runs)
    return report


def markdown(report: dict) -> str:
    data = report["dataset"]
    true = " / ".join(f"{p:.1f}" for p in report["true_powers_pct"])
    lines = [f"# Realistic detector data ({report['stamp']})", "",
             f"Scan: {report['scan']}", "",
             f"Frames {data['frames']} {data['dtype']}, beam centre {data['beam_centre_px']} "
             f"(offset {data['beam_offset_px']}), beamstop radius {data['beamstop_radius_px']} px,"
             f" {100 * data['dead_fraction']:g} % dead, gaps {data['gap_width_px']} px, "
             f"{data['hot_pixels']} hot pixels ({100 * data['mask_fraction_frame']:.1f} % of the "
             f"frame masked), saturation at {data['saturation_counts']} counts "
             f"({100 * data['saturated_fraction_frames']:.3f} % of all readings), object pixel "
             f"{data['object_pixel_nm']:.1f} nm; true mode powers {true} %.", "",
             "PSNR and SSIM with the linear phase ramp removed (a ramp moves freely between "
             "object and a refined probe); in brackets as scored without removing it.", "",
             "Network rows: worst / median over the training seeds "
             f"{report['train_seeds']}; mode powers of each seed's trained probe; seconds: "
             "median training time (solver targets included).", "",
             "| reading: method | amp PSNR (dB) | phase PSNR (dB) | amp SSIM | phase SSIM "
             "| mode powers (%) | seconds |", "|---|---|---|---|---|---|---|"]
    for name, row in report["rows"].items():
        if "runs" in row:
            powers = ", ".join(" / ".join(f"{p:.1f}" for p in run["mode_powers_pct"])
                               for run in row["runs"])
            cells = [f"{row[f'{key}_deramped_worst']:{form}} / "
                     f"{row[f'{key}_deramped_median']:{form}} ({row[f'{key}_worst']:{form}} / "
                     f"{row[f'{key}_median']:{form}})" for key, form in METRICS]
        else:
            powers = " / ".join(f"{p:.1f}" for p in row["mode_powers_pct"])
            cells = [f"{row[f'{key}_deramped']:{form}} ({row[key]:{form}})"
                     for key, form in METRICS]
        lines.append(f"| {name} | {' | '.join(cells)} | {powers} | {row['seconds']:.1f} |")
    for name, row in report["calibration"].items():
        cells = [f"{row[f'{key}_deramped']:{form}} ({row[key]:{form}})" for key, form in METRICS]
        lines.append(f"| calibration: {name} | {' | '.join(cells)} | | |")
    return "\n".join(lines + differences(report)) + "\n"


def differences(report: dict) -> list[str]:
    """Lines giving each reading's PSNR (phase ramp removed) minus the reference reading's,
    per method: realistic - clean, masks off - realistic, 1 mode - realistic (network rows:
    worst - worst and median - median)."""
    rows = report["rows"]
    lines = ["", "Differences in PSNR (dB, phase ramp removed; network: worst / median):", ""]
    for name in rows:
        reading, _, method = name.partition(": ")
        reference = {"realistic": "clean", "masks off": "realistic", "1 mode": "realistic"}
        other = f"{reference.get(reading)}: {method}"
        if other not in rows:
            continue
        parts = []
        for key in ("amplitude_psnr_db", "phase_psnr_db"):
            stats = ("_worst", "_median") if "runs" in rows[name] else ("",)
            parts.append(f"{key.split('_')[0]} " + " / ".join(
                f"{rows[name][f'{key}_deramped{stat}'] - rows[other][f'{key}_deramped{stat}']:+.2f}"
                for stat in stats))
        lines.append(f"- {method}: {reading} - {reference[reading]}: {', '.join(parts)}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=SCAN["n_positions"])
    parser.add_argument("--seed", type=int, default=SCAN["seed"])
    parser.add_argument("--iterations", type=int, default=40, help="solver iterations")
    parser.add_argument("--epochs", type=int, default=10, help="network epochs")
    parser.add_argument("--target-iterations", type=int, default=40,
                        help="solver iterations of the network's training targets "
                             "(targets='refine:T'; 0: no targets)")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="training seeds of the network rows (worst and median reported)")
    parser.add_argument("--readings", nargs="+", default=list(READINGS), choices=READINGS)
    parser.add_argument("--methods", nargs="+", default=["solver", "network"],
                        choices=("solver", "network"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = run(args)
    report["stamp"] = utc_stamp()
    write_record(args.out, "realistic", report["stamp"], report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
