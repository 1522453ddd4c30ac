"""The contract every backend implements (documentation and typing only; no framework imports).

A backend package (``ptycho.backends.pytorch``, ``ptycho.backends.tensorflow``) exposes:

``train_model(train, validation, probe, intensity_scale, config, execution, output_dir) -> TrainedModel``
    Train on ``train`` (a :class:`ptycho.data.grouping.GroupedData`), monitoring ``validation``
    (GroupedData or None). ``probe`` is the normalised probe (N, N) complex64, or its
    (M, N, N) incoherent modes for ``ModelConfig.probe_modes`` M > 1;
    ``intensity_scale`` the initial s; ``config`` a TrainingConfig, ``execution`` an
    ExecutionConfig. Several scans: ``train`` a :class:`ptycho.data.grouping.GroupedScans`
    of K scans, ``probe`` (K, N, N) (or (K, M, N, N)) and ``intensity_scale`` (K,) each scan's own; every
    sample meets its scan's probe and s in the loss, and the model keeps the first scan's.

``load_model(manifest, payload, probe) -> TrainedModel``
    Rebuild the network from ``manifest['model_config']`` and load the weights payload (bytes of
    the archive member ``manifest['payload']``) without unpickling anything.

``PAYLOAD_NAME``
    Archive member name of the weights payload.

A ``TrainedModel`` has attributes ``backend`` (str), ``model_config`` (ModelConfig),
``intensity_scale`` (float, the trained s), ``probe`` ((N, N) complex64, the trained probe;
(M, N, N) for M probe modes), ``history`` (dict of per-epoch lists) and the methods

``set_probe(probe)``
    Replace the probe (same shape), e.g. by its orthogonalised modes after training.

``predict(inputs, batch_size=DEFAULT_PREDICT_BATCH, central_px=None) -> ndarray``
    ``inputs = [X_scaled (B, N, N, C) float32, local_offsets (B, 1, 2, C)]``; returns the object
    patch of each sample, centred on the group mean, complex64 (B, N, N, 1). No autograd.
    ``central_px`` (int, optional) says the caller uses only the central
    ``central_px x central_px`` pixels of each patch (stitching uses its crop M); when that is
    at most N/2 the cnn skips its border branch and returns zeros outside the central N/2 box
    (exact inside; about 30 % faster at N=64, gridsize 1). Ignored where the whole patches
    are needed (the object_big merge of gridsize > 1).

``payload_bytes() -> bytes``
    The serialised weights (torch state_dict / Keras weights.h5).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ptycho.config.config import DEFAULT_PREDICT_BATCH


class TrainedModel(Protocol):
    backend: str
    model_config: Any
    intensity_scale: float
    probe: np.ndarray
    history: dict

    def predict(self, inputs, batch_size: int = DEFAULT_PREDICT_BATCH,
                central_px: int | None = None) -> np.ndarray: ...

    def payload_bytes(self) -> bytes: ...

    def set_probe(self, probe: np.ndarray) -> None: ...
