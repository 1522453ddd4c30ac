"""Experiment: does a real-space physics input make the network's inverse map learnable?

The package's generators read the far-field amplitudes and must learn the whole inverse
(Fourier -> real space, phase retrieval) from one scan. This experiment, outside the package,
trains one small U-Net, **supervised on the ground truth** (``--loss truth``, a practical upper
bound of any physics-loss recipe) or with the **physics loss** alone (``--loss physics``: the
far-field amplitude MAE against the measured patterns with the known probe, no ground truth,
as the PINN at gridsize 1), with two inputs:

``amplitude``
    ``log1p`` of the normalised amplitudes (1 channel), as the package's generators see them.
``estimate``
    the same channel plus a per-pattern estimate of the object patch: ``K`` ePIE iterations on
    that pattern alone from a flat patch with the known probe (no overlap, so each pattern's
    estimate is independent and costs ``2K`` FFTs), as amplitude, real and imaginary parts,
    each weighted by ``|P| / max |P|``, and that weight (4 channels).

With ``--group K`` (physics loss only) each batch is made of groups of K neighbouring
positions whose predicted patches are merged into one canvas (probe-intensity-weighted mean,
as the package's ``object_big``) before the forward model reads each member's window back:
the overlap constraint of gridsize > 1 (:func:`overlap_crops`), at the same number of patterns
per epoch.

Scans: the two of ``benchmarks/quality.py`` (train on ``train``, test on ``new``), plus
``--library`` image pairs as extra training scans (same design, seeds 10, 11, ...). The U-Net:
3 levels (32, 64, 128 filters), sigmoid amplitude (times 2 with the physics loss), ``pi tanh``
phase; the truth loss is the amplitude MAE plus the wrapped-phase MAE on the central N/2 box;
Adam 1e-3, batch 16 (``--batch-size``; ``--device cuda`` on a GPU). Stitched with the probe weight
and scored like ``quality.py`` with the linear phase ramp removed, beside its calibration rows
and the per-pattern estimate stitched on its own.

Writes ``benchmarks/results/network-input-<UTC stamp>.json`` and ``.md``. Behind sections 6-7 of
``benchmarks/results/network-diagnosis-20261207.md``; run ``python benchmarks/network_input.py
--help``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # the benchmark scans and scoring

#: ``--loss physics``: the network's amplitude (0, 1) times this is the patch amplitude, whose
#: scale is set by the probe of :func:`fft_targets` (a flat patch of 1 matches the patterns'
#: mean power).
PHYSICS_AMPLITUDE = 2.0


def normalised_amplitude(scan) -> np.ndarray:
    """The scan's amplitudes (M, N, N) float64 times the dataset normalisation factor."""
    from ptycho import physics

    amplitude = np.asarray(scan.diffraction, np.float64)
    return amplitude * physics.diffraction_norm_factor(amplitude)


def fft_targets(amplitude: np.ndarray, probe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(targets (M, N, N), probe (N, N))`` for the unnormalised ``fft2`` of ``probe * patch``.

    ``amplitude`` (M, N, N) normalised far-field amplitudes (DC at the centre); the targets are
    them times N with DC at [0, 0], and ``probe`` is rescaled so that its far-field power
    matches the patterns' mean: a flat patch of 1 predicts the mean power.
    """
    n = amplitude.shape[-1]
    scale = np.sqrt((amplitude ** 2).sum((1, 2)).mean() / (np.abs(probe) ** 2).sum())
    return np.fft.ifftshift(amplitude, axes=(-2, -1)) * n, probe * scale


def physics_target(scan) -> tuple[np.ndarray, np.ndarray]:
    """``(targets (M, N, N), probe per pattern (M, N, N))`` of ``--loss physics``, the
    far-field amplitude MAE with the known probe (:func:`fft_targets`)."""
    target, probe = fft_targets(normalised_amplitude(scan), np.asarray(scan.probe, np.complex128))
    return target, np.broadcast_to(probe, target.shape)


def per_pattern_estimate(amplitude: np.ndarray, probe: np.ndarray, iterations: int) -> np.ndarray:
    """ePIE on each pattern alone from a flat patch; returns the patches (M, N, N) complex128.

    ``amplitude`` (M, N, N) normalised far-field amplitudes (DC at the centre); ``probe``
    (N, N) complex, rescaled here so that its far-field power matches the patterns' mean.
    """
    target, probe = fft_targets(amplitude, probe)
    step = 1.0 / (np.abs(probe) ** 2).max()
    patches = np.ones(amplitude.shape, np.complex128)
    for _ in range(iterations):
        psi = probe * patches
        spectrum = np.fft.fft2(psi)
        projected = np.fft.ifft2(spectrum * (target / np.maximum(np.abs(spectrum), 1e-9)))
        patches = patches + step * np.conj(probe) * (projected - psi)
    return patches


def network_input(scan, kind: str, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """``(channels (M, C, N, N) float32, estimate (M, N, N) complex128 or None)``."""
    amplitude = normalised_amplitude(scan)
    channels = [np.log1p(amplitude)[:, None]]
    estimate = None
    if kind == "estimate":
        probe = np.asarray(scan.probe, np.complex128)
        estimate = per_pattern_estimate(amplitude, probe, iterations)
        weight = np.broadcast_to(np.abs(probe) / np.abs(probe).max(), estimate.shape)
        channels.append(np.stack([np.abs(estimate) * weight, estimate.real * weight,
                                  estimate.imag * weight, weight], 1))
    return np.concatenate(channels, 1).astype(np.float32), estimate


def neighbour_groups(positions_xy: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(M // size, size)`` indices: random anchors, each with its ``size - 1`` nearest
    neighbours (one epoch of ``--group``; a position may appear in several groups)."""
    from scipy.spatial import cKDTree

    _, nearest = cKDTree(positions_xy).query(positions_xy, k=size)
    anchors = rng.permutation(len(positions_xy))[:len(positions_xy) // size]
    return nearest.reshape(len(positions_xy), size)[anchors]


def fourier_shift(values, shift_rc):
    """``values`` (B, S, S) complex moved by ``shift_rc`` (B, 2) pixels (periodic: the content
    at ``(i, j)`` moves to ``(i + shift_r, j + shift_c)``; exact for whole pixels)."""
    import torch

    frequency = torch.fft.fftfreq(values.shape[-1], dtype=shift_rc.dtype,
                                  device=shift_rc.device)
    ramp = torch.exp(-2j * np.pi * (shift_rc[:, 0, None, None] * frequency[None, :, None]
                                    + shift_rc[:, 1, None, None] * frequency[None, None, :]))
    return torch.fft.ifft2(torch.fft.fft2(values) * ramp)


def overlap_crops(patches, weight, offsets_rc, margin: int):
    """Each group's patches merged into one canvas, then every member's window read back.

    ``patches`` (G, K, N, N) complex64, ``weight`` (G, K, N, N) float (each member's probe
    intensity, about zero at the patch's edges), ``offsets_rc`` (G, K, 2) float32, whole
    pixels: each member's position minus its group's reference point, rounded. The canvas
    (``N + 2 margin`` square) is the ``weight``-weighted mean of the members' patches, as the
    package's ``object_big``; the returned (G, K, N, N) windows of it are what the forward
    model sees, so the loss asks the members to agree where they overlap.

    Whole pixels leave each member up to 0.5 px per axis off its neighbours. On the training
    scan's true patches that raises the far-field amplitude misfit from 3.09 to 3.38 (a flat
    object: 4.35); a sub-pixel Fourier placement rings at the patch edges (6.6) and a
    bilinear one blurs the windows (about 48 % of the way to the flat object's misfit).
    """
    from torch.nn import functional as F

    groups, size, n = patches.shape[0], patches.shape[1], patches.shape[-1]
    pad = (margin, margin, margin, margin)
    offsets = offsets_rc.reshape(-1, 2)
    weight = weight.reshape(-1, n, n)
    numerator = fourier_shift(F.pad(weight * patches.reshape(-1, n, n), pad), offsets)
    denominator = fourier_shift(F.pad(weight, pad).to(patches.dtype), offsets).real
    numerator = numerator.reshape(groups, size, *numerator.shape[-2:]).sum(1)
    denominator = denominator.reshape(groups, size, *denominator.shape[-2:]).sum(1)
    canvas = numerator / (denominator.clamp(min=0) + 1e-3 * weight.max())
    windows = fourier_shift(canvas.repeat_interleave(size, 0), -offsets)
    return windows[:, margin:margin + n, margin:margin + n].reshape(groups, size, n, n)


def make_unet(c_in: int, width: int = 32):
    import torch
    from torch import nn
    from torch.nn import functional as F

    def block(a: int, b: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(b, b, 3, padding=1), nn.ReLU())

    class UNet(nn.Module):
        """(B, c_in, N, N) -> amplitude (B, N, N) in (0, 1), phase (B, N, N) in (-pi, pi)."""

        def __init__(self):
            super().__init__()
            self.e1, self.e2, self.e3 = block(c_in, width), block(width, 2 * width), block(
                2 * width, 4 * width)
            self.d2, self.d1 = block(6 * width, 2 * width), block(3 * width, width)
            self.out = nn.Conv2d(width, 2, 1)

        def forward(self, x):
            a = self.e1(x)
            b = self.e2(F.max_pool2d(a, 2))
            c = self.e3(F.max_pool2d(b, 2))
            d = self.d2(torch.cat([F.interpolate(c, scale_factor=2), b], 1))
            d = self.d1(torch.cat([F.interpolate(d, scale_factor=2), a], 1))
            out = self.out(d)
            return torch.sigmoid(out[:, 0]), np.pi * torch.tanh(out[:, 1])

    return UNet()


def stitched_score(patches, scan, region) -> dict:
    from ptycho.stitching import probe_weight, stitch_patches

    half = scan.N // 2
    stitched = stitch_patches(patches, np.column_stack([scan.xcoords, scan.ycoords]), M=half,
                              pixel_weight=probe_weight(scan.probe, half))
    return quality.score(stitched.object, stitched.x0_px, stitched.y0_px, stitched.weight, scan,
                         region, remove_phase_ramp=True)


def train_and_score(kind: str, seed: int, train_scans, test_scans, regions, args) -> dict:
    import torch

    from ptycho import physics

    torch.manual_seed(seed)
    device = torch.device(args.device)
    inputs = torch.tensor(np.concatenate([network_input(s, kind, args.estimate_iterations)[0]
                                          for s in train_scans])).to(device)
    n = train_scans[0].N
    if args.loss == "truth":
        truth = torch.tensor(np.concatenate([
            physics.extract_patches(s.object_guess, s.xcoords, s.ycoords, n) for s in train_scans
        ])).to(device, torch.complex64)
    else:  # the measured amplitudes and each scan's probe, per pattern
        measured, probes = zip(*(physics_target(s) for s in train_scans))
        measured = torch.tensor(np.concatenate(measured), dtype=torch.float32).to(device)
        probes = torch.tensor(np.concatenate(probes)).to(device, torch.complex64)
    net = make_unet(inputs.shape[1]).to(device)
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    box = slice(n // 4, n // 4 + n // 2)
    positions_rc = np.concatenate([np.column_stack([s.ycoords, s.xcoords]) for s in train_scans])
    first = np.cumsum([0] + [len(s.xcoords) for s in train_scans])
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for _ in range(args.epochs):
        if args.group == 1:
            batches = torch.randperm(len(inputs)).split(args.batch_size)
        else:  # groups of neighbours within each scan, batch_size patterns per batch
            groups = np.concatenate([
                start + neighbour_groups(positions_rc[start:stop][:, ::-1], args.group, rng)
                for start, stop in itertools.pairwise(first)])
            batches = torch.from_numpy(groups[rng.permutation(len(groups))]).split(
                max(1, args.batch_size // args.group))
        for batch_cpu in batches:
            batch = batch_cpu.to(device)
            amplitude, phase = net(inputs[batch.reshape(-1)])
            if args.loss == "truth":
                target = truth[batch]
                error = ((amplitude - target.abs()).abs()
                         + torch.angle(torch.polar(amplitude, phase) * target.conj()).abs())
                loss = error[:, box, box].mean()
            else:  # (B, N, N) patches, or (G, K, N, N) for groups
                patches = torch.polar(PHYSICS_AMPLITUDE * amplitude, phase).reshape(
                    *batch.shape, n, n)
                if args.group > 1:  # what the forward model sees: the merged canvas's windows
                    members = torch.from_numpy(positions_rc[batch_cpu.numpy()]).float().to(
                        device)
                    offsets = (members - members.mean(1, keepdim=True)).round()
                    patches = overlap_crops(patches, probes[batch].abs() ** 2, offsets,
                                            margin=math.ceil(float(offsets.abs().max())) + 1)
                predicted = torch.fft.fft2(probes[batch] * patches).abs()
                loss = (predicted - measured[batch]).abs().mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    scores = {"train_s": time.perf_counter() - started}
    gain = 1.0 if args.loss == "truth" else PHYSICS_AMPLITUDE
    for name, scan in test_scans.items():
        with torch.no_grad():
            amplitude, phase = net(torch.tensor(network_input(
                scan, kind, args.estimate_iterations)[0]).to(device))
        scores[name] = stitched_score(torch.polar(gain * amplitude, phase).cpu().numpy(), scan,
                                      regions[name])
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="+", default=["amplitude", "estimate"],
                        choices=["amplitude", "estimate"])
    parser.add_argument("--library", nargs="*", default=[], metavar="AMP:PHASE",
                        help="extra training scans, scikit-image names (e.g. moon:brick)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--estimate-iterations", type=int, default=20)
    parser.add_argument("--loss", choices=["truth", "physics"], default="truth",
                        help="truth: supervised on the true patches (amplitude and wrapped "
                             "phase MAE on the central N/2 box); physics: the far-field "
                             "amplitude MAE against the measured patterns with the known probe "
                             "(no ground truth, as the PINN)")
    parser.add_argument("--group", type=int, default=1,
                        help="with --loss physics: patterns per group of nearest neighbours "
                             "whose patches are merged into one canvas before the forward "
                             "model (the overlap constraint, as gridsize 2 with object_big "
                             "for 4); the same number of patterns per epoch as 1")
    parser.add_argument("--batch-size", type=int, default=16, help="patterns per step")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--out", type=Path, default=quality.RESULTS)
    args = parser.parse_args(argv)
    if args.group > 1 and args.loss != "physics":
        parser.error("--group needs --loss physics (the overlap acts through the forward model)")

    from ptycho.data.simulation import simulate

    scans = quality.make_scans()
    regions = {name: quality.scored_region(scan) for name, scan in scans.items()}
    library = [simulate(**quality.SCAN_COMMON, object_kind=f"image:{spec}", seed=10 + i).scan
               for i, spec in enumerate(args.library)]
    report = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "calibration": {name: quality.calibration(scan, regions[name], True)
                              for name, scan in scans.items()},
              "estimate alone": {name: stitched_score(
                  network_input(scan, "estimate", args.estimate_iterations)[1], scan,
                  regions[name]) for name, scan in scans.items()},
              "runs": {}}
    for kind in args.inputs:
        runs = [train_and_score(kind, seed, [scans["train"], *library], scans, regions, args)
                for seed in args.seeds]
        report["runs"][kind] = runs
        print(f"[{kind}] {runs}", file=sys.stderr, flush=True)

    lines = [f"# Network input experiment (U-Net, loss: {args.loss})", "",
             f"Arguments: {report['args']}. Amplitude / phase SSIM, linear phase ramp removed; "
             "networks: worst / median over seeds.", "",
             "| row | train amp | train phase | new amp | new phase |", "|---|---|---|---|---|"]

    def cells(per_scan: list[dict]) -> str:
        out = []
        for name in scans:
            for component in quality.COMPONENTS:
                values = [scores[name][f"{component}_ssim"] for scores in per_scan]
                out.append(f"{min(values):.3f} / {statistics.median(values):.3f}"
                           if len(values) > 1 else f"{values[0]:.3f}")
        return " | ".join(out)

    for row in report["calibration"]["train"]:
        lines.append(f"| {row} | " + cells([{name: report["calibration"][name][row]
                                              for name in scans}]) + " |")
    lines.append(f"| per-pattern estimate alone, {args.estimate_iterations} iterations | "
                 + cells([report["estimate alone"]]) + " |")
    for kind, runs in report["runs"].items():
        seconds = statistics.median(run["train_s"] for run in runs)
        group = f", groups of {args.group}" if args.group > 1 else ""
        lines.append(f"| U-Net, input {kind}, {args.epochs} epochs{group}, "
                     f"{1 + len(library)} training scans ({seconds:.0f} s) | {cells(runs)} |")
    text = "\n".join(lines) + "\n"
    base = quality.write_record(args.out, "network-input", quality.utc_stamp(), report, text)
    print(text + f"\nresults: {base}.json, .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
