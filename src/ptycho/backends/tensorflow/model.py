"""The complete PINN as a Keras 3 model: generator + differentiable forward model.

Weights (all tracked Keras variables, all saved by ``save_weights``)::

    generator.*              the Conv2D kernels and biases (see ``network``)
    scaler.log_scale         () float32, log of the intensity scale s
    illumination.probe_ri    (2, N, N) float32, real and imaginary parts of the probe
                             ((2, M, N, N) for M probe modes)

The torch ``PtychoPINN`` has the same parameters under the same names;
:func:`torch_state_dict_mapping` pairs them (the torch buffer ``illumination.mask`` is a
constant here and has no counterpart).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ptycho.backends.architecture import check_probe_shape
from ptycho.backends.tensorflow import forward_model as fm
from ptycho.backends.tensorflow.network import make_generator
from ptycho.config.config import ModelConfig


class PtychoPINN(keras.Model):
    """Network + physics, channels-last.

    ``call((x_scaled, local_offsets))`` with ``x_scaled = s * X`` (B, N, N, C) float32 and the
    legacy relative offsets ``coords_relative`` (B, 1, 2, C) returns a dict:

    ``patches`` (B, N, N, C_out) complex64
        The generator's object patches.
    ``object_centre`` (B, N, N, 1) complex64
        Object patch centred on the group mean (what inference stitches).
    ``member_patches`` (B, N, N, C) complex64
        Object patch at each member position (after the object_big merge).
    ``amplitude`` (B, N, N, C) float32
        Predicted far-field amplitude times s (compare with ``s * X``).

    Parameters
    ----------
    config : ModelConfig
        ``N`` must be set (64, 128 or 256).
    probe : ndarray, shape (N, N), or (M, N, N) for ``config.probe_modes`` M > 1, complex
        The normalised probe.
    intensity_scale : float
        Initial s.
    probe_trainable, intensity_scale_trainable : bool
        Whether ``illumination.probe_ri`` and ``scaler.log_scale`` are trainable weights.
    """

    def __init__(self, config: ModelConfig, probe: np.ndarray, intensity_scale: float,
                 probe_trainable: bool = False, intensity_scale_trainable: bool = True,
                 name: str = "ptychopinn"):
        super().__init__(name=name)
        check_probe_shape(probe, config)
        self.model_config = config
        self.generator = make_generator(config, name="generator")
        self.scaler = fm.IntensityScaler(intensity_scale, intensity_scale_trainable, name="scaler")
        self.illumination = fm.ProbeIllumination(probe, probe_trainable, config.probe_mask,
                                                 config.gaussian_smoothing_sigma,
                                                 name="illumination")
        self._build_weights()

    def _build_weights(self) -> None:
        """Create every variable now (no forward pass needed)."""
        cfg = self.model_config
        self.generator.build((None, cfg.N, cfg.N, cfg.gridsize ** 2))
        self.built = True

    # -- pieces ---------------------------------------------------------------------------------

    def object_patches(self, x_scaled, central_only: bool = False) -> tf.Tensor:
        """Complex generator output (B, N, N, C_out) complex64 for network input ``s * X``.

        ``central_only`` computes only the central N/2 box (see ``network.CnnGenerator``).
        """
        amplitude, phase = self.generator(x_scaled / self.scaler.scale(),
                                          central_only=central_only)
        return tf.complex(amplitude * tf.math.cos(phase), amplitude * tf.math.sin(phase))

    def place(self, patches: tf.Tensor, rel_xy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Return ``(member_patches (B, N, N, C), object_centre (B, N, N, 1))``.

        ``rel_xy`` (B, C, 2) per-member ``[x, y]`` offsets (see ``forward_model.offsets_to_rel``).
        """
        channels = rel_xy.shape[1]
        if self.model_config.object_big and channels > 1:
            return fm.merge_and_extract(patches, rel_xy, self.model_config.pad_object)
        if channels == 1:
            return patches, patches
        return fm.shift_single_patch(patches, rel_xy), patches

    def forward(self, x_scaled, local_offsets, probe=None) -> dict:
        """The full forward pass (see the class docstring); ``probe`` (B, N, N, 1) complex64
        ((B, M, N, N, 1) modes): each sample's own probe (several training scans), default
        the model's."""
        rel_xy = fm.offsets_to_rel(local_offsets)
        patches = self.object_patches(x_scaled)
        members, centre = self.place(patches, rel_xy)
        field = self.illumination(members, probe=probe)
        far_field = (fm.mixed_state_amplitude(field) if self.illumination.mixed_state
                     else fm.far_field_amplitude(field))
        amplitude = far_field * self.scaler.scale()
        return {"patches": patches, "object_centre": centre, "member_patches": members,
                "amplitude": amplitude}

    def call(self, inputs, training: bool | None = None):
        x_scaled, local_offsets = inputs
        return self.forward(x_scaled, local_offsets)

    def predict_object(self, x_scaled, local_offsets, central_only: bool = False) -> tf.Tensor:
        """Object patch centred on each group mean, (B, N, N, 1) complex64 (no physics).

        ``central_only``: only the central N/2 box is needed (exact there, zero outside). It
        is ignored for the object_big merge of several patterns, which needs whole patches.
        """
        rel_xy = fm.offsets_to_rel(local_offsets)
        merge = self.model_config.object_big and rel_xy.shape[1] > 1
        patches = self.object_patches(x_scaled, central_only=central_only and not merge)
        if merge:
            return fm.merge_and_extract(patches, rel_xy, self.model_config.pad_object)[1]
        return patches

    def count_generator_params(self) -> int:
        """Number of generator parameters (conv kernels and biases)."""
        return int(sum(np.prod(v.shape) for v in self.generator.weights))


def offsets_to_legacy(rel_xy: np.ndarray) -> np.ndarray:
    """Per-member ``(B, C, 2)`` offsets -> legacy ``(B, 1, 2, C)``."""
    return np.transpose(np.asarray(rel_xy), (0, 2, 1))[:, None]


def torch_state_dict_mapping(model: PtychoPINN) -> dict:
    """Pair every torch ``PtychoPINN.state_dict()`` key with a Keras variable.

    Returns
    -------
    dict
        ``{torch_key: (keras_variable, layout)}`` with ``layout`` 'conv_kernel' (torch
        ``(out, in, k, k)`` = keras ``(k, k, in, out)`` transposed by ``(3, 2, 0, 1)``; k = 3,
        or 1 for the ffno's pointwise layers) or 'same' (identical shapes: biases, the ffno's
        spectral weights (width, width, modes), ``scaler.log_scale`` (),
        ``illumination.probe_ri`` (2, N, N)). The torch buffer ``illumination.mask`` is not a
        weight here and is absent.
    """
    mapping = {f"generator.{name}": weight
               for name, weight in model.generator.torch_weights().items()}
    mapping["scaler.log_scale"] = (model.scaler.log_scale, "same")
    mapping["illumination.probe_ri"] = (model.illumination.probe_ri, "same")
    return mapping
