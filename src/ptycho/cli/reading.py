"""The scan-reading flags shared by ``inspect``, ``train``, ``infer``, ``evaluate`` and ``refine``.

:func:`add_reading_options` defines them (one argument group); :func:`read_options` turns the
parsed flags into a :class:`ptycho.data.reading.ReadOptions` (an invalid value is one
InputError naming the flag) and :func:`read_scan_with_options` reads a scan with them.

Light module: NumPy and the readers are imported only when a scan is read.
"""

from __future__ import annotations

import argparse

from ptycho.cli.common import add_option

GROUP_DESCRIPTION = (
    "how the scan file is read (every format: .npz, .h5, .cxi). Frames larger than wanted are "
    "cropped around the beam centre and/or binned as they are read (streamed stacks stay on "
    "disk); see docs/data-formats.md")


def add_reading_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--crop``, ``--bin``, ``--detector-centre``, ``--mask``, ``--saturation``,
    ``--probe`` and ``--translation-axes`` (all default None: read the file as it is)."""
    group = parser.add_argument_group("reading the scan", GROUP_DESCRIPTION)
    add_option(group, "crop", type=int, metavar="C",
               help="cut a C x C window (detector pixels) around the beam centre (default: "
                    "the whole frame, which must then be square)")
    add_option(group, "bin", type=int, metavar="K",
               help="sum K x K detector pixels (after --crop); the patterns are C/K pixels "
                    "(default: 1)")
    add_option(group, "detector-centre", "--detector-center", "--detector_center", type=str,
               metavar="ROW,COL",
               help="beam centre in detector pixels (0-based; default: the centre of mass of "
                    "the mean frame, bad pixels excluded)")
    add_option(group, "mask", type=str, metavar="FILE",
               help="bad pixels, nonzero = do not use (.npy, .npz, .h5 or .cxi; detector-sized "
                    "or N x N), added to the scan's own mask")
    add_option(group, "saturation", type=float, metavar="COUNTS",
               help="detector pixels at or above COUNTS in a pattern are left out of that "
                    "pattern")
    add_option(group, "probe", type=str, metavar="FILE",
               help="probe guess instead of the scan's own (.npy, .npz, .h5, .cxi or a "
                    "ptychodus product; (modes,) N x N)")
    add_option(group, "translation-axes", type=str, metavar="X,Y",
               help="CXI only: which sample translation axis (and sign) gives the object "
                    "column x and row y (default: -x,-y, the beam moves opposite to the "
                    "sample; -y,-x transposes, x,-y flips x)")


def read_options(args: argparse.Namespace):
    """The :class:`ptycho.data.reading.ReadOptions` of the parsed flags (InputError naming the
    flag when a value is invalid)."""
    from ptycho.data.reading import DEFAULT_TRANSLATION_AXES, ReadOptions, parse_centre

    centre = getattr(args, "detector_centre", None)
    bin_factor = getattr(args, "bin", None)
    return ReadOptions(
        crop_px=getattr(args, "crop", None),
        bin_factor=1 if bin_factor is None else bin_factor,
        centre_px=None if centre is None else parse_centre(centre),
        mask_file=getattr(args, "mask", None),
        saturation_counts=getattr(args, "saturation", None),
        probe_file=getattr(args, "probe", None),
        translation_axes=getattr(args, "translation_axes", None) or DEFAULT_TRANSLATION_AXES)


def read_scan_with_options(path, args: argparse.Namespace, measurement: str | None = None):
    """Read the scan ``path`` with the reading flags of ``args`` (and ``measurement``, default
    ``args.measurement`` or 'auto'); return the :class:`ptycho.data.scan.Scan`."""
    from ptycho.data.io import read_scan

    measurement = measurement or getattr(args, "measurement", None) or "auto"
    return read_scan(path, measurement, options=read_options(args))
