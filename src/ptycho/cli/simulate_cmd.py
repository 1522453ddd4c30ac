"""``ptychopinn simulate``: write a simulated scan (NPZ, or realistic detector frames as CXI) with its ground truth.

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
    "probe_modes": 1,
    "mode_power": 0.2,
}
#: The detector flags (``--realistic`` only), their defaults being those of
#: ``ptycho.data.sim_detector.DetectorDefects`` (None = a default that depends on N).
DETECTOR_FLAGS = ("beam_offset", "beamstop_radius", "dead_fraction", "gap_width", "hot_pixels",
                  "saturation_level")

_DESCRIPTION = """\
Simulate a far-field ptychography scan: a synthetic complex object (amplitude in [0.5, 1],
phase in [-pi/2, pi/2] rad) is illuminated by the probe at every scan position; the
far-field intensity is scaled so that the mean total expected counts per pattern equal
--nphotons, Poisson counts are drawn (seeded) and stored as amplitudes sqrt(counts) in
diff3d, with objectGuess (ground truth), probeGuess (the probe used) and sim_* metadata.
Same arguments and seed give identical arrays.

--realistic writes what a pixel detector records instead, as CXI (--out FILE.cxi): 2N x 2N
frames of uint32 counts with the beam centre off the frame centre, a beamstop, about 3 % dead
pixels, module gaps and hot pixels (all in entry_1/instrument_1/detector_1/mask), counts
clipped at a saturation level (not in the mask), 2 probe modes (the second with 20 % of the
power), positions as sample translations in metres (8 keV, 2 m, 75 um pixels) and the ground
truth in entry_1/sample_1/ptychopinn_truth. Read it back with
  --crop N --detector-centre ROW,COL --saturation LEVEL --probe-modes 2
on train, infer, refine, evaluate and inspect (the printed line gives them;
docs/data-formats.md)."""


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
    add_option(parser, "probe-modes", type=int, metavar="M",
               help="1: the coherent probe; 2: two incoherent modes made from it, the second "
                    "carrying --mode-power of the power (default: 1, with --realistic 2)")
    add_option(parser, "mode-power", type=float, metavar="F",
               help="fraction of the power in the second probe mode, in (0, 0.5] "
                    f"(default: {DEFAULTS['mode_power']:g})")
    add_option(parser, "out", required=True, metavar="FILE",
               help="output scan: FILE.npz, or FILE.cxi with --realistic (written atomically)")
    group = parser.add_argument_group(
        "realistic detector (--realistic)",
        "what a pixel detector does to the patterns; every flag needs --realistic")
    add_option(group, "realistic", type=bool,
               help="write 2N x 2N detector frames with defects as CXI (see above)")
    add_option(group, "beam-offset", type=str, metavar="ROW,COL",
               help="beam centre minus the frame centre (N, N) in whole detector pixels, each "
                    "within +-N/2 (default: -round(N/10),round(N/8), i.e. -6,8 at N=64)")
    add_option(group, "beamstop-radius", type=float, metavar="PX",
               help="radius of the beamstop disc (zero counts, masked) around the beam centre "
                    "(default: max(1, N/32))")
    add_option(group, "dead-fraction", type=float, metavar="F",
               help="fraction of dead pixels (random, zero counts, masked) (default: 0.03)")
    add_option(group, "gap-width", type=int, metavar="PX",
               help="width of the two module-gap stripes (zero counts, masked) crossing the "
                    "window; 0 = none (default: max(1, N//32))")
    add_option(group, "hot-pixels", type=int, metavar="K",
               help="hot pixels (half the saturation level in every frame, masked) "
                    "(default: 2)")
    add_option(group, "saturation-level", type=int, metavar="COUNTS",
               help="counts are clipped at COUNTS (not masked: read with --saturation COUNTS) "
                    "(default: the level 0.1 %% of the valid readings reach, 2 significant "
                    "digits)")
    return parser


def _value(args: argparse.Namespace, name: str):
    value = getattr(args, name, None)
    return DEFAULTS[name] if value is None else value


def run(args: argparse.Namespace) -> int:
    """Simulate the scan described by ``args`` and write it to ``args.out``."""
    from pathlib import Path

    from ptycho.data.simulation import simulate, write_simulation
    from ptycho.errors import InputError

    realistic = bool(getattr(args, "realistic", None))
    suffix = ".cxi" if realistic else ".npz"
    expected = f"a file name ending in {suffix}" + (" (--realistic writes CXI)" if realistic
                                                     else "")
    out = getattr(args, "out", None)
    if not out:
        raise InputError("missing option", "--out", expected)
    out = Path(out)
    if out.suffix.lower() != suffix:
        raise InputError("invalid file name", "--out", expected, str(out))
    if out.is_dir():
        raise InputError("not a file", "--out", expected, "a directory")
    if not realistic:
        given = [name for name in DETECTOR_FLAGS if getattr(args, name, None) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise InputError("option needs --realistic", flag,
                             "--realistic (a detector flag changes only realistic scans)")

    scan_args = dict(
        object_kind=_value(args, "object"), scan_kind=_value(args, "scan"),
        object_size=_value(args, "object_size"), step=_value(args, "step"),
        jitter=_value(args, "jitter"), n_positions=getattr(args, "positions", None),
        nphotons=_value(args, "nphotons"))
    modes = getattr(args, "probe_modes", None)
    modes = (2 if realistic else DEFAULTS["probe_modes"]) if modes is None else modes
    if realistic:
        return _run_realistic(args, out, modes, scan_args)
    probe = _probe(args, modes)
    simulation = simulate(probe_kind=_value(args, "probe"), N=_value(args, "N"),
                          seed=_value(args, "seed"), probe=probe, **scan_args)
    write_simulation(out, simulation)

    scan = simulation.scan
    height, width = scan.object_guess.shape
    print(f"wrote {out}: {scan.n_positions} positions ({_value(args, 'scan')}, step "
          f"{float(_value(args, 'step')):g} px, jitter {float(_value(args, 'jitter')):g} px), "
          f"N={scan.N}, object {_value(args, 'object')} {height}x{width}, probe "
          f"{_value(args, 'probe')}, {scan.mean_photons_per_pattern():.4g} counts per pattern "
          f"(expected {float(_value(args, 'nphotons')):.4g}), seed {_value(args, 'seed')}"
          + (f", {modes} probe modes (mode powers {_mode_powers(scan.probe_modes)})"
             if modes > 1 else ""))
    return 0


def _mode_powers(modes) -> str:
    from ptycho import physics

    powers = physics.mode_powers(modes)
    return " / ".join(f"{100 * p:.1f} %" for p in powers / powers.sum())


def _probe(args: argparse.Namespace, modes: int):
    """None (the probe kind's coherent probe) or, for 2 modes, the mixed-state probe."""
    from ptycho.data.sim_probes import make_probe
    from ptycho.data.simulation import mixed_state_probe
    from ptycho.errors import InputError

    if modes not in (1, 2):
        raise InputError("invalid value", "--probe-modes", "1 or 2 simulated probe modes",
                         repr(modes))
    if modes == 1:
        return None
    try:
        return mixed_state_probe(make_probe(_value(args, "probe"), _value(args, "N")),
                                 _value(args, "mode_power"), _value(args, "seed"))
    except InputError as exc:
        if exc.where != "second_mode_power":
            raise
        raise InputError(exc.what, "--mode-power", exc.expected, exc.actual) from None


def _run_realistic(args: argparse.Namespace, out, modes: int, scan_args: dict) -> int:
    """``simulate --realistic``: the detector frames as CXI, one summary line."""
    from ptycho.data.reading import parse_centre
    from ptycho.data.sim_detector import DetectorDefects, simulate_realistic, write_realistic_cxi
    from ptycho.errors import InputError

    offset = getattr(args, "beam_offset", None)
    if offset is not None:
        try:
            row, col = parse_centre(offset)
        except InputError:
            row = col = None
        if row is None or row != int(row) or col != int(col):
            raise InputError("invalid value", "--beam-offset",
                             "ROW,COL: two whole numbers of detector pixels", repr(offset))
        offset = (int(row), int(col))
    fields = {"beam_offset_px": offset,
              "beamstop_radius_px": getattr(args, "beamstop_radius", None),
              "gap_width_px": getattr(args, "gap_width", None),
              "saturation_counts": getattr(args, "saturation_level", None),
              "dead_fraction": getattr(args, "dead_fraction", None),
              "hot_pixels": getattr(args, "hot_pixels", None)}
    defaults = DetectorDefects()
    for name in ("dead_fraction", "hot_pixels"):
        if fields[name] is None:
            fields[name] = getattr(defaults, name)
    if modes not in (1, 2):
        raise InputError("invalid value", "--probe-modes", "1 or 2 simulated probe modes",
                         repr(modes))
    realistic = simulate_realistic(N=_value(args, "N"), probe_kind=_value(args, "probe"),
                                   probe_modes=modes, second_mode_power=_value(args, "mode_power"),
                                   defects=DetectorDefects(**fields), seed=_value(args, "seed"),
                                   **scan_args)
    write_realistic_cxi(out, realistic)
    n, defects = realistic.N, realistic.defects
    row, col = realistic.centre_px
    window = realistic.mask[row - n // 2:row + n // 2, col - n // 2:col + n // 2]
    print(f"wrote {out}: {len(realistic.frames)} frames of {2 * n}x{2 * n} uint32 counts, beam "
          f"centre at row {row}, col {col} (offset {defects.beam_offset_px[0]:+d},"
          f"{defects.beam_offset_px[1]:+d} px from the frame centre), beamstop radius "
          f"{defects.beamstop_radius_px:g} px, {100 * defects.dead_fraction:g} % dead pixels, "
          f"gaps {defects.gap_width_px} px, {defects.hot_pixels} hot pixels ("
          f"{int(window.sum())} of {n * n} window pixels masked), saturation at "
          f"{realistic.saturation_counts} counts, {modes} probe modes (mode powers "
          f"{_mode_powers(realistic.true_probe)}), object pixel "
          f"{realistic.object_pixel_m * 1e9:.4g} nm, object {_value(args, 'object')}, "
          f"seed {_value(args, 'seed')}; read with --crop {n} --detector-centre {row},{col} "
          f"--saturation {realistic.saturation_counts}"
          + (f" --probe-modes {modes}" if modes > 1 else ""))
    return 0
