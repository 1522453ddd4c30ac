"""PyTorch + Lightning backend (the default). Imported only when selected."""

from ptycho.backends.pytorch.training import (
    BACKEND,
    PAYLOAD_NAME,
    TorchTrainedModel,
    load_model,
    train_model,
)

__all__ = ["BACKEND", "PAYLOAD_NAME", "TorchTrainedModel", "load_model", "train_model"]
