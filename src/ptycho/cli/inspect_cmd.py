"""``ptychopinn inspect FILE``: a human (or ``--json``) summary of a data file.

The file kind is chosen from the file name suffix (:data:`SUFFIX_KINDS`; an ``.npz`` holding
``probe_position_x_m`` is a ptychodus product, an HDF5 file holding ``xcoords`` and
``diffraction``/``diff3d`` datasets a scan, a folder holding ``wts.h5.zip`` or
``manifest.json`` a model archive); each kind has an inspector ``(path, args) -> dict``
(JSON-ready summary) and a formatter ``dict -> str`` in :data:`INSPECTORS`.

Light module: NumPy and the loaders are imported inside the inspectors.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptycho.cli.common import add_option
from ptycho.cli.reading import add_reading_options

#: File name suffix (lower case) -> kind key of :data:`INSPECTORS`.
SUFFIX_KINDS: dict[str, str] = {".npz": "scan", ".zip": "archive", ".h5": "product",
                                 ".hdf5": "product", ".cxi": "scan"}
#: Human names of the kinds, for messages.
KIND_NAMES: dict[str, str] = {"scan": "scan (.npz, .h5, .hdf5, .cxi)",
                              "archive": "model archive (wts.h5.zip or its folder)",
                              "product": "ptychodus product (.h5, .hdf5, .npz)"}


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``inspect`` subcommand to ``subparsers``; return its parser."""
    supported = ", ".join(KIND_NAMES.values())
    parser = subparsers.add_parser(
        "inspect", help="summarise a scan, model archive or ptychodus product",
        description=f"Print a summary of a data file. Supported: {supported}.")
    parser.add_argument("file", metavar="FILE", help="file to inspect")
    add_option(parser, "json", action="store_true", default=False,
               help="print the summary as JSON")
    add_option(parser, "measurement", choices=("auto", "amplitude", "intensity"), default="auto",
               help="what diff3d holds in a scan NPZ: auto follows the file (measurement key, "
                    "bad_pixels, integer dtype), or force amplitude / intensity "
                    "(default: %(default)s)")
    add_reading_options(parser)
    return parser


def _detect_kind(path: Path) -> str:
    from ptycho.errors import InputError

    if not path.exists():
        raise InputError("file not found", str(path), "an existing file to inspect")
    if path.is_dir():
        if (path / "wts.h5.zip").is_file() or (path / "manifest.json").is_file():
            return "archive"
        raise InputError("not a file", str(path),
                         "one of: " + ", ".join(KIND_NAMES.values()), "a directory")
    kind = SUFFIX_KINDS.get(path.suffix.lower())
    if kind == "scan" and _is_npz_product(path):
        kind = "product"
    if kind == "product" and (_is_hdf5_scan(path) or _is_cxi(path)):
        kind = "scan"
    if kind is None:
        raise InputError("unsupported file type", str(path),
                         "one of: " + ", ".join(KIND_NAMES.values()),
                         f"suffix {path.suffix or '(none)'!r}")
    return kind


def run(args: argparse.Namespace) -> int:
    """Inspect ``args.file`` and print its summary (text or JSON)."""
    path = Path(args.file)
    kind = _detect_kind(path)
    inspector, formatter = INSPECTORS[kind]
    summary = inspector(path, args)
    if getattr(args, "json", False):
        print(json.dumps(summary, indent=2))
    else:
        print(formatter(summary))
    return 0


# ---------------------------------------------------------------------------------------------
# scan (NPZ or HDF5)
# ---------------------------------------------------------------------------------------------

def _simulation_metadata(path: Path) -> dict[str, Any]:
    """The numeric and text ``sim_*`` members of a scan file (what ``simulate`` recorded)."""
    import contextlib

    from ptycho.data.io import open_scan_reader

    simulation = {}
    with contextlib.closing(open_scan_reader(path)) as reader:
        for key in sorted(k for k in reader.keys if k.startswith("sim_")):
            value = reader.get(key)
            if value.dtype.kind in "biufU":
                simulation[key[len("sim_"):]] = value.tolist()
    return simulation


def _inspect_scan(path: Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Summary of a scan NPZ or HDF5 (read with :func:`ptycho.data.io.read_scan`; a large
    pattern stack is streamed from disk, never held whole in memory).

    Returns
    -------
    dict
        JSON-ready: positions, N, photons per pattern (mean/min/max of ``sum(amplitude**2)``),
        measurement domain and reason, probe (shape, power ``sum |P|**2``, peak, phase range
        where ``|P|`` > 10% of its peak), object (shape, amplitude and phase ranges, patches
        fully inside) or None, position extent, mean nearest-neighbour step, ``sim_*``
        metadata and the loader's notes.
    """
    import numpy as np
    from scipy.spatial import cKDTree

    from ptycho.cli.reading import read_scan_with_options
    from ptycho.data.lazy import pattern_power

    scan = read_scan_with_options(path, args)
    simulation = _simulation_metadata(path)

    power = pattern_power(scan.diffraction)
    probe = np.asarray(scan.probe, np.complex128)
    magnitude = np.abs(probe)
    bright = magnitude > 0.1 * magnitude.max()
    phase = np.angle(probe[bright])
    x, y = scan.xcoords, scan.ycoords
    n = scan.N

    step = None
    if scan.n_positions > 1:
        points = np.column_stack([x, y])
        distances, _ = cKDTree(points).query(points, k=2)
        step = float(distances[:, 1].mean())

    obj = None
    if scan.object_guess is not None:
        height, width = scan.object_guess.shape
        amplitude = np.abs(scan.object_guess)
        object_phase = np.angle(scan.object_guess)
        inside = ((x >= n / 2) & (x <= width - n / 2) & (y >= n / 2) & (y <= height - n / 2))
        obj = {
            "shape": [int(height), int(width)],
            "amplitude_min": float(amplitude.min()),
            "amplitude_max": float(amplitude.max()),
            "phase_min": float(object_phase.min()),
            "phase_max": float(object_phase.max()),
            "patches_inside": int(inside.sum()),
        }

    return {
        "file": str(path),
        "kind": "scan",
        "positions": scan.n_positions,
        "N": n,
        "photons_per_pattern": {"mean": float(power.mean()), "min": float(power.min()),
                                "max": float(power.max())},
        "measurement": {"domain": scan.measured_domain, "reason": scan.measured_reason},
        "bad_pixels": None if scan.bad_pixels is None else int(np.count_nonzero(scan.bad_pixels)),
        "saturation_counts": scan.saturation_counts,
        "probe_mode_power": _mode_power(scan.probe_stack()),
        "probe": {
            "shape": [int(s) for s in probe.shape],
            "power": float(np.sum(magnitude ** 2)),
            "max_amplitude": float(magnitude.max()),
            "phase_min": float(phase.min()),
            "phase_max": float(phase.max()),
        },
        "object": obj,
        "extent": {"x_min": float(x.min()), "x_max": float(x.max()),
                   "y_min": float(y.min()), "y_max": float(y.max())},
        "mean_nn_step": step,
        "simulation": simulation or None,
        "notes": list(scan.notes),
    }


def _mode_power(probe) -> list[float]:
    """Each probe mode's share of the total power ``sum |P_k|**2`` ([1.0] for one mode)."""
    from ptycho import physics

    powers = physics.mode_powers(probe)
    return [float(p) for p in powers / powers.sum()]


def _format_mode_power(shares: list[float]) -> str:
    return (f"{len(shares)} incoherent modes, power "
            + ", ".join(f"{100 * share:.1f} %" for share in shares))


def _short(value: Any) -> str:
    """Compact text of a metadata value (floats with 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def _format_scan(summary: dict[str, Any]) -> str:
    """Text rendering of :func:`_inspect_scan`'s summary."""
    photons = summary["photons_per_pattern"]
    probe = summary["probe"]
    extent = summary["extent"]
    rows = [
        ("positions", f"{summary['positions']}"),
        ("N (pattern size)", f"{summary['N']} x {summary['N']} px"),
        ("photons per pattern", (f"mean {photons['mean']:.6g}, min {photons['min']:.6g}, "
                                f"max {photons['max']:.6g}  (sum of amplitude^2)")),
        ("measurement domain", (f"{summary['measurement']['domain']} "
                               f"({summary['measurement']['reason']})")),
        ("probe power", (f"{probe['power']:.6g} (sum |P|^2); size {probe['shape'][0]} x "
                        f"{probe['shape'][1]}, max |P| {probe['max_amplitude']:.4g}, phase "
                        f"{probe['phase_min']:.3f} .. {probe['phase_max']:.3f} rad where "
                        f"|P| > 10% of max")),
    ]
    if len(summary.get("probe_mode_power") or []) > 1:
        rows.append(("probe modes", _format_mode_power(summary["probe_mode_power"])
                     + " (probe power above: mode 0)"))
    if summary.get("bad_pixels") is not None:
        rows.append(("bad pixels", f"{summary['bad_pixels']} of {summary['N'] ** 2} (left out "
                                   "of every pattern)"))
    if summary.get("saturation_counts") is not None:
        rows.append(("saturation", f"{summary['saturation_counts']:.6g} counts (pixels at or "
                                   "above it left out of their pattern)"))
    obj = summary["object"]
    if obj is None:
        rows.append(("object size", "no objectGuess"))
    else:
        rows.append(("object size", (f"{obj['shape'][0]} x {obj['shape'][1]} px; amplitude "
                                    f"{obj['amplitude_min']:.4g} .. {obj['amplitude_max']:.4g}, "
                                    f"phase {obj['phase_min']:.3f} .. {obj['phase_max']:.3f} rad; "
                                    f"{obj['patches_inside']}/{summary['positions']} patches "
                                    f"fully inside")))
    rows.append(("position extent", (f"x {extent['x_min']:.2f} .. {extent['x_max']:.2f}, "
                                    f"y {extent['y_min']:.2f} .. {extent['y_max']:.2f} px")))
    step = summary["mean_nn_step"]
    rows.append(("mean nearest-neighbour step",
                 "n/a (one position)" if step is None or not math.isfinite(step)
                 else f"{step:.3f} px"))
    if summary.get("simulation"):
        rows.append(("simulation", ", ".join(f"{k}={_short(v)}"
                                             for k, v in summary["simulation"].items())))
    width = max(len(label) for label, _ in rows)
    lines = [f"{summary['file']}: {KIND_NAMES[summary['kind']]}"]
    lines += [f"  {label:<{width}}  {text}" for label, text in rows]
    lines += [f"  note: {note}" for note in summary.get("notes", [])]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# model archive
# ---------------------------------------------------------------------------------------------

def _inspect_archive(path: Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Summary of a verified model archive (nothing is unpickled or executed)."""
    from ptycho.archive import read_archive

    archive = read_archive(path)
    manifest = archive.manifest
    return {
        "file": archive.source, "kind": "archive",
        "backend": manifest.get("backend"), "format_version": manifest.get("format_version"),
        "ptychopinn_version": manifest.get("ptychopinn_version"),
        "created": manifest.get("created"), "N": manifest.get("N"),
        "gridsize": manifest.get("gridsize"), "intensity_scale": manifest.get("intensity_scale"),
        "nphotons": manifest.get("nphotons"), "model_config": manifest.get("model_config"),
        "history_summary": manifest.get("history_summary"),
        "probe_shape": list(archive.probe.shape), "probe_mode_power": _mode_power(archive.probe),
        "payload": manifest.get("payload"),
        "payload_bytes": len(archive.payload), "members_verified": sorted(manifest.get("files", {})),
        "training_scans": manifest.get("training_scans") if archive.probes is not None else None,
    }


def _format_archive(summary: dict[str, Any]) -> str:
    model = summary.get("model_config") or {}
    history = summary.get("history_summary") or {}
    rows = [
        ("backend", f"{summary['backend']} (payload {summary['payload']}, "
                    f"{summary['payload_bytes']} bytes)"),
        ("created", f"{summary['created']} by ptychopinn {summary['ptychopinn_version']} "
                    f"(format {summary['format_version']})"),
        ("N, gridsize", f"{summary['N']}, {summary['gridsize']}"),
        ("architecture", model.get("architecture", "cnn (not recorded)")),
        ("probe", _format_mode_power(summary["probe_mode_power"])
         if len(summary["probe_mode_power"]) > 1 else "1 mode (coherent)"),
        ("model", ", ".join(f"{k}={_short(v)}" for k, v in model.items())),
        ("intensity scale", f"{summary['intensity_scale']:.6g} (nphotons {summary['nphotons']:.4g})"),
        ("training", ", ".join(f"{k}={_short(v)}" for k, v in history.items()) or "n/a"),
        ("checksums", "verified: " + ", ".join(summary["members_verified"])),
    ]
    scans = summary.get("training_scans")
    if scans:  # a model trained on several scans
        rows.insert(-2, ("training scans", f"{len(scans)}: " + "; ".join(
            f"{Path(str(s.get('file'))).name} ({s.get('n_positions')} positions, nphotons "
            f"{float(s.get('nphotons', float('nan'))):.4g})" for s in scans)))
    width = max(len(label) for label, _ in rows)
    lines = [f"{summary['file']}: {KIND_NAMES['archive']}"]
    lines += [f"  {label:<{width}}  {text}" for label, text in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# ptychodus product
# ---------------------------------------------------------------------------------------------

def _is_hdf5_scan(path: Path) -> bool:
    """True for an HDF5 file with root datasets ``xcoords`` and ``diffraction``/``diff3d``."""
    import h5py

    from ptycho.data.npz import DIFFRACTION_KEYS

    try:
        with h5py.File(path, "r") as handle:
            return "xcoords" in handle and any(key in handle for key in DIFFRACTION_KEYS)
    except OSError:
        return False


def _is_cxi(path: Path) -> bool:
    from ptycho.data.cxi import is_cxi

    return is_cxi(path)


def _is_npz_product(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return "probe_position_x_m.npy" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _inspect_product(path: Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Summary of a ptychodus product file."""
    import numpy as np

    from ptycho.data.products import read_product

    product = read_product(path)
    obj = product.object
    return {
        "file": str(path), "kind": "product", "name": product.name,
        "positions": int(product.n_positions),
        "probe_shape": list(product.probe.shape), "object_shape": list(obj.shape),
        "object_pixel_m": [product.object_pixel_width_m, product.object_pixel_height_m],
        "object_center_m": [product.object_center_x_m, product.object_center_y_m],
        "photon_energy_eV": product.photon_energy_eV,
        "detector_object_distance_m": product.detector_object_distance_m,
        "object_amplitude_range": [float(np.abs(obj).min()), float(np.abs(obj).max())],
        "losses": len(product.loss_values),
    }


def _format_product(summary: dict[str, Any]) -> str:
    width_m, height_m = summary["object_pixel_m"]
    rows = [
        ("name", summary["name"]),
        ("positions", str(summary["positions"])),
        ("probe", " x ".join(map(str, summary["probe_shape"])) + " (OPR, modes, H, W)"),
        ("object", " x ".join(map(str, summary["object_shape"])) + " (layers, H, W); amplitude "
                   + " .. ".join(f"{v:.4g}" for v in summary["object_amplitude_range"])),
        ("object pixel", f"{width_m:.4g} x {height_m:.4g} m, centre "
                         + ", ".join(f"{v:.4g}" for v in summary["object_center_m"]) + " m"),
        ("photon energy", f"{summary['photon_energy_eV']:.6g} eV, detector distance "
                          f"{summary['detector_object_distance_m']:.4g} m"),
        ("losses", str(summary["losses"])),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{summary['file']}: {KIND_NAMES['product']}"]
    lines += [f"  {label:<{width}}  {text}" for label, text in rows]
    return "\n".join(lines)


#: kind -> (inspector, formatter)
INSPECTORS: dict[str, tuple[Callable[[Path, Any], dict], Callable[[dict], str]]] = {
    "scan": (_inspect_scan, _format_scan),
    "archive": (_inspect_archive, _format_archive),
    "product": (_inspect_product, _format_product),
}
