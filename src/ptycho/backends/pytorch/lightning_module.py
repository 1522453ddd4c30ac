"""Thin LightningModule around :class:`PtychoPINN`: losses, optimiser, schedule and clipping."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from ptycho import physics
from ptycho.backends.pytorch import forward_model as fm
from ptycho.backends.pytorch.model import PtychoPINN
from ptycho.backends.schedule import CosineSchedule
from ptycho.config.config import TrainingConfig


def total_variation(patches: torch.Tensor) -> torch.Tensor:
    """Mean squared finite differences of real and imaginary parts, (B, C, N, N) complex."""
    parts = torch.stack([patches.real, patches.imag])
    return (parts.diff(dim=-1).pow(2).mean() + parts.diff(dim=-2).pow(2).mean())


def amplitude_phase_mae(pred: torch.Tensor, truth: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """MAE of amplitudes plus MAE of wrapped phase differences over ``region`` (N, N) weights."""
    amp_err = (pred.abs() - truth.abs()).abs()
    phase_err = torch.angle(pred * torch.conj(truth)).abs()
    denom = region.sum() * pred.shape[0] * pred.shape[1]
    return ((amp_err + phase_err) * region).sum() / denom


def adam(params: list[torch.nn.Parameter], learning_rate: float,
         fused: bool | None = None) -> torch.optim.Adam:
    """The training optimiser: ``torch.optim.Adam`` (eps 1e-8), fused where torch has a kernel.

    The fused update (one kernel for all parameters; CPU and CUDA) is the same arithmetic as the
    per-parameter loop to float rounding and halves the optimiser's share of a CPU training step
    (about 6 -> 3 ms per step at N=64, batch 16). ``fused=False`` forces the loop (Lightning
    cannot clip the gradients of a fused optimiser under mixed precision).
    """
    if fused is None:
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=learning_rate, eps=1e-8, fused=fused)


def cosine_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig,
                     steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``lr_schedule='cosine'`` as a ``LambdaLR`` to step after every optimiser update.

    The rate of the update after ``k`` updates is ``learning_rate * CosineSchedule.factor(k)``
    (:mod:`ptycho.backends.schedule`); the scheduler's ``last_epoch`` counts the updates and is
    saved with a resumable checkpoint. The closure keeps the schedule out of the state dict.
    """
    schedule = CosineSchedule.from_config(config, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.factor(step))


def clip_gradients(params, max_norm: float | None) -> torch.Tensor | None:
    """``grad_clip_norm``: scale the gradients of ``params`` to global L2 norm <= ``max_norm``.

    ``torch.nn.utils.clip_grad_norm_`` (what Lightning's ``gradient_clip_val`` with
    ``gradient_clip_algorithm='norm'`` runs on the optimiser's parameters); returns the norm
    before clipping, or None when clipping is off.
    """
    if not max_norm:
        return None
    return torch.nn.utils.clip_grad_norm_(list(params), max_norm)


class PINNLightning(L.LightningModule):
    """Trains :class:`PtychoPINN` by Poisson NLL (PINN) or patch MAE (supervised).

    ``intensity_scale`` is the dataset's s: the network input is ``s * X`` and the measured
    counts are ``(s * X)**2``; the model's own (possibly trainable) scale starts at s.

    Several training scans (batches with a ``scan`` index, from
    :class:`~ptycho.data.grouping.GroupedScans`): ``intensity_scale`` is their K scales
    ``s_k`` and ``scan_probes`` (K, N, N) complex their normalised probes ((K, M, N, N) for
    M probe modes: each scan has M modes). The network input
    is ``s_1 * X`` (the model's scale starts at ``s_1``, so the network sees X whatever the
    scan); a sample of scan k is illuminated by its probe ``P_k`` and its predicted and
    measured amplitudes are multiplied by ``s_k / s_1``: counts ``(s_k X)**2`` against
    ``(s_k / s_1 * scale * |F(P_k O)| / N)**2``, the trainable scale one factor for all scans.
    """

    def __init__(self, model: PtychoPINN, config: TrainingConfig,
                 intensity_scale: float | np.ndarray, scan_probes: np.ndarray | None = None):
        super().__init__()
        self.model = model
        self.config = config
        if scan_probes is None:
            self.register_buffer("data_scale", torch.tensor(float(intensity_scale)))
        else:
            scales = np.asarray(intensity_scale, np.float64)
            self.register_buffer("data_scale", torch.tensor(float(scales[0])))
            self.register_buffer("scale_ratio", torch.as_tensor(scales / scales[0],
                                                                dtype=torch.float32),
                                 persistent=False)
            self.register_buffer("scan_probes", torch.as_tensor(
                np.asarray(scan_probes, np.complex64)), persistent=False)
        n = model.config.N
        region = physics.centre_mask(n) if model.config.pad_object else torch.ones(n, n)
        self.register_buffer("truth_region", torch.as_tensor(region, dtype=torch.float32),
                             persistent=False)
        self.supervised = model.config.model_type == "supervised"
        self.has_validation = True
        self.steps_per_epoch: int | None = None  # None: from the Trainer (cosine schedule)

    def _loss(self, batch: dict) -> torch.Tensor:
        x_scaled = batch["x"] * self.data_scale
        rel = batch["rel"]
        cfg = self.config
        if self.supervised:
            patches = self.model.object_patches(x_scaled)
            return amplitude_phase_mae(patches, batch["truth"], self.truth_region)
        scan = batch.get("scan")
        out = self.model(x_scaled, rel,
                         None if scan is None else self.scan_probes[scan].unsqueeze(-3))
        if scan is not None:  # compare in each sample's own scan units: both times s_k / s_1
            ratio = self.scale_ratio[scan][:, None, None, None]
            out.amplitude, x_scaled = out.amplitude * ratio, x_scaled * ratio
        valid = batch.get("valid")  # (B, C, N, N) bool with a detector mask: data terms skip the rest
        loss = x_scaled.new_zeros(())
        if cfg.nll_weight:
            loss = loss + cfg.nll_weight * fm.poisson_nll(out.amplitude.square(), x_scaled.square(),
                                                          valid=valid)
        if cfg.mae_weight:
            loss = loss + cfg.mae_weight * fm.masked_mean((out.amplitude - x_scaled).abs(), valid)
        if cfg.realspace_mae_weight:
            loss = loss + cfg.realspace_mae_weight * amplitude_phase_mae(
                out.member_patches, batch["truth"], self.truth_region)
        if cfg.realspace_weight:
            loss = loss + cfg.realspace_weight * total_variation(out.patches)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        finite = bool(torch.isfinite(loss))
        # agreed across DDP ranks: a rank that stopped alone would leave the others waiting in
        # the gradient all-reduce until the process-group timeout
        if self.trainer.strategy.reduce_boolean_decision(not finite, all=False):
            value = loss.item() if not finite else "non-finite in another process"
            raise FloatingPointError(
                f"training loss became {value} at epoch {self.current_epoch}, step {batch_idx}")
        size = batch["x"].shape[0]
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size,
                 sync_dist=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss = self._loss(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch["x"].shape[0], sync_dist=True)

    def on_train_epoch_end(self) -> None:
        # for the CSV/TensorBoard logs; HistoryAndBest reads the values directly
        self.log("intensity_scale", self.model.scaler.scale().detach())
        self.log("learning_rate", self.optimizers().param_groups[0]["lr"])

    def _steps_per_epoch(self) -> int:
        """Optimiser updates per epoch in this process (``steps_per_epoch`` if set)."""
        if self.steps_per_epoch is not None:
            return int(self.steps_per_epoch)
        trainer = self.trainer
        return max(1, int(trainer.estimated_stepping_batches) // max(1, int(trainer.max_epochs)))

    def configure_optimizers(self):
        """Adam with the schedule of ``lr_schedule`` (see ``TrainingConfig``).

        Gradient clipping (``grad_clip_norm``) is the Trainer's ``gradient_clip_val`` with
        ``gradient_clip_algorithm='norm'`` (``training.train_model``): after the backward pass
        (and the DDP all-reduce, and AMP unscaling), before each optimiser step.
        """
        cfg = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        fused = None
        if cfg.grad_clip_norm and self._trainer is not None and "mixed" in str(self.trainer.precision):
            fused = False  # Lightning refuses to clip a fused optimiser's gradients under AMP
        optimizer = adam(params, cfg.learning_rate, fused=fused)
        if cfg.lr_schedule == "cosine":
            scheduler = cosine_scheduler(optimizer, cfg, self._steps_per_epoch())
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
            min_lr=cfg.plateau_min_lr)
        monitor = "val_loss" if self.has_validation else "train_loss"
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": monitor, "interval": "epoch"}}
