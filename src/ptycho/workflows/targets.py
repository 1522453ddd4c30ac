"""Training targets from the iterative solver (``TrainingConfig.targets = 'refine[:K]'``).

The training scan is reconstructed with :func:`ptycho.refine.refine`, and the result becomes
the scan's ``objectGuess`` for training: the supervised term (``realspace_mae_weight``, the
amplitude and wrapped-phase MAE of the predicted patches) then pulls the network towards the
solver's patches while the physics loss keeps it consistent with the counts. With
``model_type='supervised'`` the solver's patches are the only labels (the recipe of supervised
ptychography networks that learn from an iterative reconstruction).

Probe: when the training learns or estimates a probe (:func:`solver_refines_probe`:
``probe_trainable``, or ``ModelConfig.probe_modes`` M > 1, whose made modes are only a guess
of the mode powers) the solver also refines the probe (``RefineOptions.refine_probe``, all M
modes, orthogonalised and ordered by power as the solver returns them), and the target scan
carries that probe (``probe``, and ``probe_modes`` for M > 1): the network then trains with the
solver's probe, normalised as always, instead of the scan's initial one, and the archive's
``probe.npy`` holds the recovered modes. Otherwise the probe stays fixed and the target scan
keeps the scan's probe.

Conventions: the network predicts ``counts = s**2 |F(P_n O)|**2`` with ``P_n`` the target
scan's probe normalised by the model's ``probe_scale`` and ``s`` the intensity scale, while the
solver's probe is ``c P_n`` with ``c`` fitted to the counts (the refined probe is ``c P_n`` too,
since ``P_n`` is made from it). The target is therefore ``(c / s) O_solver``, with its global
phase (which the data do not determine) set so that the mean over the lit pixels is real and
positive. A refined probe may also take a linear phase ramp (or a shift) that the object gives
up: the target and the probe the network trains with come from the same solution, so their
product, the exit wave, and the predicted counts are the solver's either way.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import numpy as np

from ptycho import physics
from ptycho.data.scan import Scan

if TYPE_CHECKING:
    from ptycho.config.config import TrainingConfig

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


def solver_refines_probe(config: TrainingConfig) -> bool:
    """Whether the solver targets of ``config`` refine the probe.

    True when the training learns the probe (``probe_trainable``) or estimates a mixed state
    (``model.probe_modes`` > 1: the made modes carry a guessed 5 % each, see
    docs/probe-modes.md); False for a fixed single-mode probe, which is used as given.
    """
    return bool(config.probe_trainable or config.model.probe_modes > 1)


def solver_targets(scan: Scan, iterations: int, probe_scale: float, nphotons: float,
                   seed: int = 0, probe_modes: int = 1, refine_probe: bool = False):
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
    refine_probe : bool
        Also refine the probe (every mode; :func:`solver_refines_probe` decides it in
        training); the target scan then carries the refined probe.

    Returns
    -------
    target_scan : Scan
        ``scan`` with ``object_guess`` (H, W) complex64 the target object, and all positions
        moved by one whole-pixel offset so that every patch lies inside it (a common integer
        shift changes neither the patterns nor the patches). With ``refine_probe`` its
        ``probe`` (N, N) complex64 is the solver's mode 0 and ``probe_modes`` (M, N, N)
        complex64 all its modes for M > 1 (None for one mode), in the solver's scale (the
        training normalises it): ``target_scan.initial_probe(probe_modes)`` is the solver's
        probe up to that scale.
    result : ptycho.refine.RefineResult
    """
    from ptycho.refine import RefineOptions, refine
    from ptycho.refine.canvas import canvas_for_positions, resample_onto

    options = RefineOptions(seed=seed, probe_modes=probe_modes, refine_probe=refine_probe)
    if iterations:
        options.iterations = int(iterations)
    result = refine(scan, options=options)
    n = scan.N
    notes = [f"training targets: {options.iterations} solver iterations"]
    if refine_probe:
        modes = np.asarray(result.probe, np.complex64).reshape(-1, n, n)
        powers = physics.mode_powers(modes)
        scan = dataclasses.replace(scan, probe=modes[0],
                                   probe_modes=modes if len(modes) > 1 else None)
        notes.append("probe refined by the solver (mode powers "
                     + " / ".join(f"{100 * p:.1f}" for p in powers / powers.sum()) + " %)")
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
        notes=[*scan.notes, *notes])
    return target_scan, result
