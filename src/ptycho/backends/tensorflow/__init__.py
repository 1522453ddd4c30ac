"""TensorFlow + Keras 3 backend (``backend='tensorflow'``). Imported only when selected.

Same API as the PyTorch backend (see :mod:`ptycho.backends.base`): ``train_model``,
``load_model``, ``PAYLOAD_NAME`` ('model.weights.h5') and the trained-model class
:class:`TFTrainedModel`. Modules: ``network`` (the Keras ``cnn`` generator), ``forward_model``
(physics ops and the scale/probe layers), ``model`` (the PINN), ``data`` (batches from
``GroupedData``), ``training`` (losses, fit loop, save/load).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras

from ptycho.errors import BackendUnavailableError

if keras.backend.backend() != "tensorflow":
    raise BackendUnavailableError(
        f"the tensorflow backend needs Keras running on TensorFlow, but Keras uses "
        f"'{keras.backend.backend()}' (unset KERAS_BACKEND or set KERAS_BACKEND=tensorflow "
        f"before importing keras)")

from ptycho.backends.tensorflow.training import (
    BACKEND,
    PAYLOAD_NAME,
    TFTrainedModel,
    load_model,
    train_model,
)

__all__ = ["BACKEND", "PAYLOAD_NAME", "TFTrainedModel", "load_model", "train_model"]
