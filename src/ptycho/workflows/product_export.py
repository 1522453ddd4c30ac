"""Turn a reconstruction into a ptychodus product (``ptychopinn infer --product-out``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ptycho.data.products import (
    Product,
    object_center_for_canvas,
    positions_px_to_m,
)
from ptycho.data.scan import Scan
from ptycho.errors import InputError
from ptycho.stitching import StitchedObject


def require_geometry(pixel_size_m, photon_energy_eV, detector_distance_m) -> None:
    """Raise InputError naming the geometry options that are missing (no reference product)."""
    missing = [flag for flag, value in (("--pixel-size-m", pixel_size_m),
                                        ("--photon-energy-ev", photon_energy_eV),
                                        ("--detector-distance-m", detector_distance_m))
               if value is None]
    if missing:
        raise InputError("missing option", ", ".join(missing),
                         "the experiment geometry to write a product (or --product-in with the "
                         "scan's ptychodus product)")
    for flag, value in (("--pixel-size-m", pixel_size_m), ("--photon-energy-ev", photon_energy_eV),
                        ("--detector-distance-m", detector_distance_m)):
        if not value > 0:
            raise InputError("invalid value", flag, "a number > 0", str(value))


def reconstruction_product(stitched: StitchedObject, scan: Scan, *,
                           reference: Product | None = None,
                           pixel_size_m: float | None = None,
                           photon_energy_eV: float | None = None,
                           detector_distance_m: float | None = None,
                           name: str = "ptychopinn") -> Product:
    """A product whose object is ``stitched`` placed at the right world position.

    With ``reference`` (the ptychodus product the scan came from), its metadata, positions and
    probe are kept and the object's pixel size is the reference's; the canvas centre follows
    from ``x0_px``/``y0_px`` on the reference object grid (ptychodus's pixel mapping). Without
    it, ``pixel_size_m``, ``photon_energy_eV`` and ``detector_distance_m`` are required, scan
    pixel (0, 0) is the world origin and the probe is the scan's, every mode of it
    (1, modes, N, N).
    """
    obj = np.asarray(stitched.object)[None]
    if reference is not None:
        pixel_w, pixel_h = reference.object_pixel_width_m, reference.object_pixel_height_m
        centre_x, centre_y = object_center_for_canvas(
            stitched.x0_px, stitched.y0_px, obj.shape, reference.object_center_x_m,
            reference.object_center_y_m, pixel_w, pixel_h, reference.object_shape)
        return replace(reference, object=obj, object_center_x_m=centre_x,
                       object_center_y_m=centre_y, object_layer_spacing_m=np.zeros(0),
                       comments=(reference.comments + " | reconstructed by ptychopinn").strip(" |"),
                       loss_epochs=None, loss_values=None)
    require_geometry(pixel_size_m, photon_energy_eV, detector_distance_m)
    origin_shape = (1, 1)  # scan pixel (0, 0) sits at the world origin
    x_m, y_m = positions_px_to_m(scan.xcoords, scan.ycoords, 0.0, 0.0, pixel_size_m, pixel_size_m,
                                 origin_shape)
    centre_x, centre_y = object_center_for_canvas(stitched.x0_px, stitched.y0_px, obj.shape, 0.0,
                                                  0.0, pixel_size_m, pixel_size_m, origin_shape)
    return Product(detector_object_distance_m=detector_distance_m,
                   photon_energy_eV=photon_energy_eV, probe_position_x_m=x_m,
                   probe_position_y_m=y_m, probe=np.asarray(scan.probe_stack())[None],
                   object=obj, object_pixel_width_m=pixel_size_m,
                   object_pixel_height_m=pixel_size_m, object_center_x_m=centre_x,
                   object_center_y_m=centre_y, name=name,
                   comments=f"reconstructed by ptychopinn from {scan.source}",
                   probe_position_indexes=scan.scan_index if len(np.unique(scan.scan_index)) ==
                   scan.n_positions else None)
