"""Training targets from the iterative solver (``TrainingConfig.targets = 'refine[:K]'``).

The training scan is reconstructed with :func:`ptycho.refine.refine`, and the result becomes
the scan's ``objectGuess`` for training: the supervised term (``realspace_mae_weight``, the
amplitude and wrapped-phase MAE of the predicted patches) then pulls the network towards the
solver's patches while the physics loss keeps it consistent with the counts. With
``model_type='supervised'`` the solver's patches are the only labels (the recipe of supervised
ptychography networks that learn from an iterative reconstruction).

Conventions: the network predicts ``counts = s**2 |F(P_n O)|**2`` with ``P_n`` the probe
normalised by the model's ``probe_scale`` and ``s`` the intensity scale, while the solver's
probe is ``c P_n`` with ``c`` fitted to the counts. The target is therefore ``(c / s) O_solver``,
with its global phase (which the data do not determine) set so that the mean over the lit
pixels is real and positive.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ptycho import physics
from ptycho.data.scan import Scan

log = logging.getLogger(__name__)

#: Weight of the target term, per mean count per detector pixel, when ``realspace_mae_weight``
#: is left at 0. The Poisson term's gradients grow with the counts, so a fixed weight would
#: vanish beside it on bright data: at 1e6 photons on 64 x 64 pixels this gives 2441. On the
#: quality benchmark (10 epochs) weights 1000 / 3000 lifted the amplitude SSIM of the network
#: from 0.08 to 0.35 / 0.41 on the training scan and from 0.10 to 0.38 / 0.42 on a new scan.
TARGET_WEIGHT_PER_COUNT = 10.0


def default_target_weight(nphotons: float, N: int) -> float:
    """``TARGET_WEIGHT_PER_COUNT`` times the mean counts per detector pixel."""
    return TARGET_WEIGHT_PER_COUNT * float(nphotons) / (N * N)


def solver_targets(scan: Scan, iterations: int, probe_scale: float, nphotons: float,
                   seed: int = 0, probe_modes: int = 1):
    """The training scan with the solver's reconstruction as ``object_guess``.

    Parameters
    ----------
    scan : Scan
        Training scan (patterns, positions, probe).
    iterations : int
        Solver iterations; 0 takes ``RefineOptions().iterations``.
    probe_scale : float
        The model's probe normalisation (``ModelConfig.probe_scale``).
    nphotons : float
        Photons per pattern of the training's Poisson model (sets the intensity scale s).
    seed : int
        Seed of the solver's minibatch order.
    probe_modes : int
        The model's ``ModelConfig.probe_modes``: the solver runs with the same starting modes
        (:meth:`Scan.initial_probe`).

    Returns
    -------
    target_scan : Scan
        ``scan`` with ``object_guess`` (H, W) complex64 the target object, and all positions
        moved by one whole-pixel offset so that every patch lies inside it (a common integer
        shift changes neither the patterns nor the patches).
    result : ptycho.refine.RefineResult
    """
    from ptycho.refine import RefineOptions, refine
    from ptycho.refine.canvas import canvas_for_positions, resample_onto

    options = RefineOptions(seed=seed, probe_modes=probe_modes)
    if iterations:
        options.iterations = int(iterations)
    result = refine(scan, options=options)
    n = scan.N
    network_probe = physics.normalize_probe(scan.initial_probe(probe_modes), probe_scale)
    probe_ratio = float(np.linalg.norm(result.probe) / np.linalg.norm(network_probe))
    amplitude_ratio = probe_ratio / physics.intensity_scale(nphotons, n)
    lit = result.weight > 0
    target = result.object.astype(np.complex128) * amplitude_ratio
    target *= np.exp(-1j * np.angle(np.sum(target[lit] * result.weight[lit])))

    # the smallest whole-pixel canvas holding every patch; positions move to its origin
    grid = canvas_for_positions(np.column_stack([scan.xcoords, scan.ycoords]), n, 0.0)
    target_grid = resample_onto(grid, target, result.x0_px, result.y0_px, valid=lit)
    x0, y0 = grid.x0_px, grid.y0_px
    target_scan = dataclasses.replace(
        scan, object_guess=target_grid, xcoords=scan.xcoords - x0, ycoords=scan.ycoords - y0,
        xcoords_start=scan.xcoords_start - x0, ycoords_start=scan.ycoords_start - y0,
        notes=[*scan.notes, f"training targets: {options.iterations} solver iterations"])
    return target_scan, result
