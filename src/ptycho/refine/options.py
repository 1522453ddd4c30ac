"""Options of the iterative solver (:func:`ptycho.refine.refine`); standard library only."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ptycho.config.config import MAX_PROBE_MODES
from ptycho.errors import InputError

NOISE_MODELS = ("gaussian", "poisson")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class RefineOptions:
    """How :func:`ptycho.refine.refine` updates the object, the probe and the positions.

    One iteration is one pass over every scan position in random minibatches. Each minibatch
    updates the object by a preconditioned gradient step (a parallel, regularised PIE step:
    the exit-wave correction back-projected through the probe, divided by the minibatch's
    illumination ``sum |P|**2`` plus ``illumination_floor`` times its maximum).

    Attributes
    ----------
    iterations : int, >= 1
        Passes over all scan positions (epochs).
    batch_size : int, >= 1
        Positions per update. Smaller batches converge in fewer iterations, larger ones run
        faster per iteration (and on a GPU).
    noise_model : {'gaussian', 'poisson'}
        'gaussian': least squares on the amplitudes ``(|F psi| - sqrt(counts))**2`` (the
        variance-stabilised Poisson model; robust). 'poisson': the Poisson negative
        log-likelihood of the counts, the training loss of the network.
    object_step : float, > 0
        Step of the object update (1 = the full PIE step for the Gaussian model).
    illumination_floor : float, >= 0
        Fraction of the minibatch's maximum illumination added to the update's denominator
        (the rPIE regulariser): small values trust weakly lit pixels more.
    momentum : float, in [0, 1)
        After each iteration the object moves on by ``momentum`` times its accumulated change
        (heavy-ball momentum over iterations, as in momentum-accelerated PIE): it speeds up
        the slow, low-frequency part of the phase. 0 turns it off.
    decay_fraction : float, in [0, 1]
        The last ``floor(decay_fraction * iterations)`` iterations lower the object and probe
        steps along a cosine to ``final_step_fraction``; 0 keeps the full step throughout.
    final_step_fraction : float, in (0, 1]
        Step factor of the last iteration. Small late steps average the photon noise of the
        minibatches instead of following it (about +0.02-0.05 amplitude SSIM at 1e6 photons).
    refine_probe : bool
        Also update the probe (from ``probe_start_iteration`` on).
    probe_step : float, > 0
        Step of the probe update, relative to the full step.
    probe_start_iteration : int, >= 0
        First iteration (0-based) with probe updates; the object settles first.
    refine_positions : bool
        Also correct the scan positions (sub-pixel, Gauss-Newton on the exit-wave misfit).
    position_start_iteration : int, >= 0
        First iteration (0-based) with position updates.
    max_position_step_px : float, > 0
        Largest correction of one position in one update (pixels, per axis).
    max_position_correction_px : float, > 0
        Largest total correction of a position from its start (pixels, per axis); also the
        margin the object canvas keeps around the scan.
    position_affine : bool
        With ``refine_positions``: after each iteration also take one Gauss-Newton step of a
        global affine map of all positions (scale, rotation, shear about the scan's centre)
        together with the object, which is warped to follow it. The per-position steps alone
        leave such a map nearly untouched (the object follows the positions), which costs
        several dB where the positions have a scale error. About 1.6 times the time of an
        iteration with position updates only. No effect without ``refine_positions``.
    probe_modes : int, 1 to 16
        Incoherent probe modes M of the forward model, ``I = sum_k |F(P_k o)|**2``, when the
        solver starts from the scan's probe (a starting probe given to
        :func:`ptycho.refine.refine` brings its own modes): the scan's modes, completed from
        mode 0 and orthogonalised (:func:`ptycho.physics.initial_probe_modes`). With
        ``refine_probe`` every mode is refined and they are orthogonalised after each
        iteration.
    seed : int, >= 0
        Seed of the minibatch order: equal seeds give equal results on the same device.
    device : {'auto', 'cpu', 'cuda'}
        'auto' uses a CUDA GPU when torch sees one.
    """

    iterations: int = 20
    batch_size: int = 32
    noise_model: str = "gaussian"
    object_step: float = 1.0
    illumination_floor: float = 0.05
    momentum: float = 0.7
    decay_fraction: float = 0.5
    final_step_fraction: float = 0.1
    refine_probe: bool = False
    probe_step: float = 1.0
    probe_start_iteration: int = 2
    refine_positions: bool = False
    position_start_iteration: int = 2
    max_position_step_px: float = 0.5
    max_position_correction_px: float = 8.0
    position_affine: bool = True
    probe_modes: int = 1
    seed: int = 0
    device: str = "auto"

    def validate(self) -> RefineOptions:
        """Check every field; raise :class:`ptycho.errors.InputError` naming the first bad one."""
        for name in ("iterations", "batch_size"):
            _require_int(self, name, minimum=1)
        for name in ("probe_start_iteration", "position_start_iteration", "seed"):
            _require_int(self, name, minimum=0)
        _require_int(self, "probe_modes", minimum=1)
        if self.probe_modes > MAX_PROBE_MODES:
            raise InputError("invalid value", "probe_modes",
                             f"an integer from 1 to {MAX_PROBE_MODES}", repr(self.probe_modes))
        for name in ("object_step", "probe_step", "max_position_step_px",
                     "max_position_correction_px"):
            _require_positive(self, name)
        _require_range(self, "illumination_floor", 0.0, math.inf, "a number >= 0")
        _require_range(self, "momentum", 0.0, 1.0, "a number in [0, 1)", include_high=False)
        _require_range(self, "decay_fraction", 0.0, 1.0, "a number in [0, 1]")
        _require_range(self, "final_step_fraction", 0.0, 1.0, "a number in (0, 1]",
                       include_low=False)
        if self.noise_model not in NOISE_MODELS:
            raise InputError("invalid value", "noise_model", "one of " + ", ".join(NOISE_MODELS),
                             repr(self.noise_model))
        if self.device not in DEVICES:
            raise InputError("invalid value", "device", "one of " + ", ".join(DEVICES),
                             repr(self.device))
        for name in ("refine_probe", "refine_positions", "position_affine"):
            if not isinstance(getattr(self, name), bool):
                raise InputError("invalid value", name, "true or false", repr(getattr(self, name)))
        return self

    def as_dict(self) -> dict:
        """Plain dict of every option (for reports)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _require_int(options, name: str, minimum: int) -> None:
    value = getattr(options, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError("invalid value", name, f"an integer >= {minimum}", repr(value))


def _require_positive(options, name: str) -> None:
    value = getattr(options, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise InputError("invalid value", name, "a finite number > 0", repr(value))


def _require_range(options, name: str, low: float, high: float, expected: str, *,
                   include_low: bool = True, include_high: bool = True) -> None:
    value = getattr(options, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        not math.isnan(value) and (value >= low if include_low else value > low) and \
        (value <= high if include_high else value < high)
    if not ok:
        raise InputError("invalid value", name, expected, repr(value))
