"""The contract every backend implements (documentation and typing only; no framework imports).

A backend package (``ptycho.backends.pytorch``, ``ptycho.backends.tensorflow``) exposes:

``train_model(train, validation, probe, intensity_scale, config, execution, output_dir) -> TrainedModel``
    Train on ``train`` (a :class:`ptycho.data.grouping.GroupedData`), monitoring ``validation``
    (GroupedData or None). ``probe`` is the normalised probe (N, N) complex64;
    ``intensity_scale`` the initial s; ``config`` a TrainingConfig, ``execution`` an
    ExecutionConfig.

``load_model(manifest, payload, probe) -> TrainedModel``
    Rebuild the network from ``manifest['model_config']`` and load the weights payload (bytes of
    the archive member ``manifest['payload']``) without unpickling anything.

``PAYLOAD_NAME``
    Archive member name of the weights payload.

A ``TrainedModel`` has attributes ``backend`` (str), ``model_config`` (ModelConfig),
``intensity_scale`` (float, the trained s), ``probe`` ((N, N) complex64, the trained probe),
``history`` (dict of per-epoch lists) and the methods

``predict(inputs, batch_size=256) -> ndarray``
    ``inputs = [X_scaled (B, N, N, C) float32, local_offsets (B, 1, 2, C)]``; returns the object
    patch of each sample, centred on the group mean, complex64 (B, N, N, 1). No autograd.

``payload_bytes() -> bytes``
    The serialised weights (torch state_dict / Keras weights.h5).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class TrainedModel(Protocol):
    backend: str
    model_config: Any
    intensity_scale: float
    probe: np.ndarray
    history: dict

    def predict(self, inputs, batch_size: int = 256) -> np.ndarray: ...

    def payload_bytes(self) -> bytes: ...
