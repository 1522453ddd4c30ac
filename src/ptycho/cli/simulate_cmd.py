"""``ptychopinn simulate``: write a simulated scan NPZ with Poisson noise and its ground truth.

Light module: argument definitions only; NumPy and the simulator are imported inside ``run``.
"""

from __future__ import annotations

import argparse

from ptycho.cli.common import add_option

# Mirrors of ptycho.data.sim_* constants, kept literal so that ``--help`` imports no NumPy.
_PROBES = ("default", "defocused")
_SCANS = ("raster", "spiral", "random")

DEFAULTS = {
    "object": "lines",
    "probe": "default",
    "scan": "raster",
    "step": 8.0,
    "jitter": 0.0,
    "positions": None,
    "N": 64,
    "object_size": 256,
    "nphotons": 1e6,
    "seed": 0,
}

_DESCRIPTION = """\
Simulate a far-field ptychography scan: a synthetic complex object (amplitude in [0.5, 1],
phase in [-pi/2, pi/2] rad) is illuminated by the probe at every scan position; the
far-field intensity is scaled so that the mean total expected counts per pattern equal
--nphotons, Poisson counts are drawn (seeded) and stored as amplitudes sqrt(counts) in
diff3d, with objectGuess (ground truth), probeGuess (the probe used) and sim_* metadata.
Same arguments and seed give identical arrays."""


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``simulate`` subcommand to ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
        "simulate", help="simulate a noisy scan with ground truth (NPZ)",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_option(parser, "object", default=DEFAULTS["object"], metavar="KIND",
               help="object: lines (random blurred lines), grf or grf:SIGMA_PX (Gaussian random "
                    "fields, correlation length SIGMA_PX pixels, default 3), "
                    "image:NAME or image:NAME:PHASE_NAME (scikit-image sample images, e.g. "
                    "camera, astronaut, brick, grass; phase defaults to NAME rotated 90 deg) "
                    "(default: %(default)s)")
    add_option(parser, "probe", default=DEFAULTS["probe"], choices=_PROBES,
               help="probe: default (smooth real disk) or defocused (Fresnel-propagated "
                    "pinhole: complex, ringed) (default: %(default)s)")
    add_option(parser, "scan", default=DEFAULTS["scan"], choices=_SCANS,
               help="scan pattern: raster (integer grid), spiral (Fermat) or random (uniform) "
                    "(default: %(default)s)")
    add_option(parser, "step", type=float, default=DEFAULTS["step"], metavar="PX",
               help="scan step in object pixels: raster spacing, spiral mean neighbour "
                    "distance, random density 1/step^2 (default: %(default)s)")
    add_option(parser, "jitter", type=float, default=DEFAULTS["jitter"], metavar="PX",
               help="maximum uniform position jitter per axis in pixels (default: %(default)s)")
    add_option(parser, "positions", type=int, default=DEFAULTS["positions"], metavar="K",
               help="number of positions (default: all that fit; raster takes a centred "
                    "~sqrt(K) x sqrt(K) sub-grid, spiral the K innermost points)")
    add_option(parser, "N", type=int, default=DEFAULTS["N"], metavar="PX",
               help="pattern and probe size in pixels (default: %(default)s)")
    add_option(parser, "object-size", type=int, default=DEFAULTS["object_size"], metavar="PX",
               help="object height and width in pixels, at least N + 2*jitter "
                    "(default: %(default)s)")
    add_option(parser, "nphotons", type=float, default=DEFAULTS["nphotons"], metavar="P",
               help="mean expected photon counts per pattern (default: %(default)g)")
    add_option(parser, "seed", type=int, default=DEFAULTS["seed"], metavar="S",
               help="random seed for object, positions and noise (default: %(default)s)")
    add_option(parser, "out", required=True, metavar="FILE.npz",
               help="output scan NPZ (written atomically)")
    return parser


def _value(args: argparse.Namespace, name: str):
    value = getattr(args, name, None)
    return DEFAULTS[name] if value is None else value


def run(args: argparse.Namespace) -> int:
    """Simulate the scan described by ``args`` and write it to ``args.out``."""
    from pathlib import Path

    from ptycho.data.simulation import simulate, write_simulation
    from ptycho.errors import InputError

    out = getattr(args, "out", None)
    if not out:
        raise InputError("missing option", "--out", "an output file name ending in .npz")
    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise InputError("invalid file name", "--out", "a file name ending in .npz", str(out))
    if out.is_dir():
        raise InputError("not a file", "--out", "a file name ending in .npz", "a directory")

    simulation = simulate(
        object_kind=_value(args, "object"), probe_kind=_value(args, "probe"),
        scan_kind=_value(args, "scan"), N=_value(args, "N"),
        object_size=_value(args, "object_size"), step=_value(args, "step"),
        jitter=_value(args, "jitter"), n_positions=getattr(args, "positions", None),
        nphotons=_value(args, "nphotons"), seed=_value(args, "seed"))
    write_simulation(out, simulation)

    scan = simulation.scan
    height, width = scan.object_guess.shape
    print(f"wrote {out}: {scan.n_positions} positions ({_value(args, 'scan')}, step "
          f"{float(_value(args, 'step')):g} px, jitter {float(_value(args, 'jitter')):g} px), "
          f"N={scan.N}, object {_value(args, 'object')} {height}x{width}, probe "
          f"{_value(args, 'probe')}, {scan.mean_photons_per_pattern():.4g} counts per pattern "
          f"(expected {float(_value(args, 'nphotons')):.4g}), seed {_value(args, 'seed')}")
    return 0
