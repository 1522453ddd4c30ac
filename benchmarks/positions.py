"""``make bench-positions``: scan-position refinement, per-position steps alone or with the joint
affine step (``RefineOptions.position_affine``).

Scan ``train`` of ``benchmarks/quality.py`` (N=64, 512 spiral positions 6 px apart, 1e6
photons per pattern). Cases:

``draw k``
    Every position moved by errors ``numpy.random.default_rng(k).uniform(-2, 2, (512, 2))``
    (pixels, [x, y]).
``scale s``
    The same errors as draw 0 on nominal positions whose scale about the scan's centre is off:
    the true positions are ``s`` times the nominal ones (``--scale``, e.g. 1.01).
``no errors``
    The true positions given, refined all the same.

Each case runs the solver from a flat object with position refinement, ``position_affine``
off ("free") and on ("joint"), ``--iterations`` iterations each, and a reference: the same
iterations without position refinement from the true positions moved by the common shift of
the errors (their mean; no data can observe it, and on the bilinear grid a sub-pixel shift of
the whole scan alone changes the scores). Reported: RMS distance of the refined positions
from the truth after removing their common offset (pixels), amplitude and phase PSNR of the
object minus the reference's (dB, scored as in ``quality.py``), solver seconds.

Writes ``benchmarks/results/positions-<UTC timestamp>.md`` and ``.json``. Run
``python benchmarks/positions.py --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality

RESULTS = quality.RESULTS
#: Half-width of the uniform position errors per axis (pixels).
ERROR_PX = 2.0
VARIANTS = {"free": False, "joint": True}


def rms_from_truth_px(positions_xy: np.ndarray, truth_xy: np.ndarray) -> float:
    """RMS distance (pixels) of (M, 2) positions from the truth after removing the mean offset."""
    offsets = positions_xy - truth_xy
    offsets = offsets - offsets.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(offsets ** 2, axis=1))))


def cases(draws: int, scale: float | None, exact: bool) -> list[tuple[str, int | None, float]]:
    """(label, error draw or None, true/nominal scale) of every case."""
    rows = [(f"draw {k}", k, 1.0) for k in range(draws)]
    if scale is not None:
        rows.append((f"scale {scale:g}", 0, scale))
    if exact:
        rows.append(("no errors", None, 1.0))
    return rows


def run_case(scan, region, draw: int | None, scale: float, iterations: int) -> dict:
    """Reference, free and joint runs of one case; scores, RMS and seconds."""
    from ptycho.refine import RefineOptions, refine

    truth = np.column_stack([scan.xcoords, scan.ycoords])
    centre = truth.mean(axis=0)
    errors = (np.zeros_like(truth) if draw is None
              else np.random.default_rng(draw).uniform(-ERROR_PX, ERROR_PX, truth.shape))
    given = centre + (truth - centre) / scale + errors

    def solve(positions, **options):
        moved = dataclasses.replace(scan, xcoords=positions[:, 0], ycoords=positions[:, 1])
        started = time.perf_counter()
        result = refine(moved, options=RefineOptions(iterations=iterations, device="cpu",
                                                     **options))
        seconds = time.perf_counter() - started
        scores = quality.score(result.object, result.x0_px, result.y0_px, result.weight, scan,
                               region)
        return result, scores, seconds

    _, reference, _ = solve(truth + errors.mean(axis=0))
    row = {"start_rms_px": rms_from_truth_px(given, truth),
           "reference_amplitude_psnr_db": reference["amplitude_psnr_db"],
           "reference_phase_psnr_db": reference["phase_psnr_db"]}
    for name, affine in VARIANTS.items():
        result, scores, seconds = solve(given, refine_positions=True, position_affine=affine)
        row[name] = {"rms_px": rms_from_truth_px(result.positions_xy, truth),
                     "amplitude_db": scores["amplitude_psnr_db"]
                     - reference["amplitude_psnr_db"],
                     "phase_db": scores["phase_psnr_db"] - reference["phase_psnr_db"],
                     "seconds": seconds}
    return row


def markdown(report: dict) -> str:
    lines = [f"# Position refinement ({report['created']})", "",
             f"Scan `train` of benchmarks/quality.py; {report['iterations']} iterations from a "
             f"flat object; errors uniform in [-{ERROR_PX:g}, {ERROR_PX:g}] px per axis; "
             f"torch threads {report['threads']}. dB: PSNR minus the reference's (true positions "
             "moved by the errors' mean, no position refinement); RMS: refined positions from "
             "the truth after removing the common offset.", "",
             "| case | start RMS px | reference amp / phase dB | free RMS px | free amp / phase "
             "dB | free s | joint RMS px | joint amp / phase dB | joint s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, row in report["cases"].items():
        cells = [label, f"{row['start_rms_px']:.2f}",
                 f"{row['reference_amplitude_psnr_db']:.2f} / {row['reference_phase_psnr_db']:.2f}"]
        for name in VARIANTS:
            result = row[name]
            cells += [f"{result['rms_px']:.3f}",
                      f"{result['amplitude_db']:+.2f} / {result['phase_db']:+.2f}",
                      f"{result['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=80)
    parser.add_argument("--draws", type=int, default=3, help="error draws 0 .. D-1")
    parser.add_argument("--scale", type=float, default=1.01,
                        help="true / nominal scale of the scale-error case (0: no such case)")
    parser.add_argument("--no-exact", action="store_true",
                        help="leave out the case without position errors")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    started = time.perf_counter()
    scan = quality.make_scans(["train"])["train"]
    region = quality.scored_region(scan)
    report = {"created": quality.utc_created(),
              "iterations": args.iterations, "threads": torch.get_num_threads(),
              "scan": {**quality.SCAN_COMMON, **quality.SCANS["train"]}, "cases": {}}
    for label, draw, scale in cases(args.draws, args.scale or None, not args.no_exact):
        row = run_case(scan, region, draw, scale, args.iterations)
        report["cases"][label] = row
        print(label, json.dumps(row, default=float), file=sys.stderr, flush=True)
    report["total_s"] = time.perf_counter() - started
    base = quality.write_record(args.out, "positions", quality.utc_stamp(), report,
                                markdown(report))
    print(markdown(report))
    print(f"results: {base}.md, .json ({report['total_s']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
