"""PyTorch + Lightning backend (the default). Imported only when selected.

Loading and predicting need only torch; Lightning is imported on first use of ``train_model``.
"""

from ptycho.backends.pytorch.trained_model import (
    BACKEND,
    PAYLOAD_NAME,
    TorchTrainedModel,
    load_model,
)

__all__ = ["BACKEND", "PAYLOAD_NAME", "TorchTrainedModel", "load_model", "train_model"]


def __getattr__(name):
    if name == "train_model":
        from ptycho.backends.pytorch.training import train_model

        return train_model
    raise AttributeError(name)
