"""The complete PINN as a plain ``nn.Module``: generator + differentiable forward model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ptycho.backends.architecture import check_probe_shape
from ptycho.backends.pytorch import forward_model as fm
from ptycho.backends.pytorch.network import make_generator
from ptycho.config.config import ModelConfig


@dataclass
class ForwardOutput:
    """Outputs of :meth:`PtychoPINN.forward` (channels-first).

    Attributes
    ----------
    patches : (B, C_out, N, N) complex
        The generator's object patches.
    object_centre : (B, 1, N, N) complex
        Object patch centred on the group mean (what inference stitches).
    member_patches : (B, C, N, N) complex
        Object patch at each member position (after the object_big merge).
    amplitude : (B, C, N, N) real
        Predicted far-field amplitude times s (compare with ``s * X``).
    """

    patches: torch.Tensor
    object_centre: torch.Tensor
    member_patches: torch.Tensor
    amplitude: torch.Tensor


class PtychoPINN(nn.Module):
    """Network + physics. Input ``s * X`` (B, C, N, N) and relative offsets (B, C, 2).

    ``probe`` (N, N) complex, or (M, N, N) for ``config.probe_modes`` M > 1 (the amplitude is
    then that of the incoherent sum of the modes' far fields).
    """

    def __init__(self, config: ModelConfig, probe: np.ndarray, intensity_scale: float,
                 probe_trainable: bool = False, intensity_scale_trainable: bool = True):
        super().__init__()
        check_probe_shape(probe, config)
        self.config = config
        # channels-last convolutions take oneDNN's fast path on CPU (about 2x, see benchmarks)
        self.generator = make_generator(config).to(memory_format=torch.channels_last)
        self.scaler = fm.IntensityScaler(intensity_scale, intensity_scale_trainable)
        self.illumination = fm.ProbeIllumination(probe, probe_trainable, config.probe_mask,
                                                 config.gaussian_smoothing_sigma)

    def object_patches(self, x_scaled: torch.Tensor, central_only: bool = False) -> torch.Tensor:
        """Complex generator output (B, C_out, N, N) for network input ``s * X``.

        ``central_only`` computes only the central N/2 box (see
        :class:`~ptycho.backends.pytorch.network.CnnGenerator`).
        """
        x = (x_scaled / self.scaler.scale()).contiguous(memory_format=torch.channels_last)
        amplitude, phase = self.generator(x, central_only)
        amplitude, phase = amplitude.float(), phase.float()  # physics stays float32 under AMP
        # Not torch.polar: its gradient is wrong for negative amplitudes (swish border branch).
        return torch.complex(amplitude * torch.cos(phase), amplitude * torch.sin(phase))

    def place(self, patches: torch.Tensor, rel_xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(member_patches (B, C, N, N), object_centre (B, 1, N, N))``."""
        channels = rel_xy.shape[1]
        if self.config.object_big and channels > 1:
            return fm.merge_and_extract(patches, rel_xy, self.config.pad_object)
        if channels == 1:
            return patches, patches
        return fm.shift_single_patch(patches, rel_xy), patches

    def forward(self, x_scaled: torch.Tensor, rel_xy: torch.Tensor,
                probe: torch.Tensor | None = None) -> ForwardOutput:
        """``probe`` (B, 1, N, N) complex, or (B, M, 1, N, N) modes: each sample's own probe
        (several training scans); default the model's probe."""
        patches = self.object_patches(x_scaled)
        members, centre = self.place(patches, rel_xy)
        field = self.illumination(members, probe)
        far_field = (fm.mixed_state_amplitude(field) if self.illumination.mixed_state
                     else fm.far_field_amplitude(field))
        amplitude = far_field * self.scaler.scale()
        return ForwardOutput(patches=patches, object_centre=centre, member_patches=members,
                             amplitude=amplitude)

    @torch.no_grad()
    def predict_object(self, x_scaled: torch.Tensor, rel_xy: torch.Tensor,
                       central_only: bool = False) -> torch.Tensor:
        """Object patch centred on each group mean, (B, 1, N, N) complex (no physics).

        ``central_only``: only the central N/2 box is needed (exact there, zero outside). It
        is ignored for the object_big merge of several patterns, which needs whole patches.
        """
        merge = self.config.object_big and rel_xy.shape[1] > 1
        patches = self.object_patches(x_scaled, central_only and not merge)
        if merge:
            return fm.merge_and_extract(patches, rel_xy, self.config.pad_object)[1]
        return patches


def offsets_to_torch(local_offsets: np.ndarray) -> np.ndarray:
    """Legacy offsets (B, 1, 2, C) -> channels-first (B, C, 2) float32."""
    offsets = np.asarray(local_offsets, np.float32)
    return np.ascontiguousarray(np.transpose(offsets[:, 0], (0, 2, 1)))
