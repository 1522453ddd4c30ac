"""A trained PyTorch model behind the backend-neutral API; loading needs no Lightning."""

from __future__ import annotations

import io

import numpy as np
import torch

from ptycho.backends.architecture import skips_border
from ptycho.backends.pytorch.model import PtychoPINN, offsets_to_torch
from ptycho.config.config import DEFAULT_PREDICT_BATCH, ModelConfig
from ptycho.errors import ArchiveError, InputError, first_line

PAYLOAD_NAME = "weights.pt"
BACKEND = "pytorch"


class TorchTrainedModel:
    """A trained (or loaded) PyTorch model behind the backend-neutral API."""

    backend = BACKEND
    payload_name = PAYLOAD_NAME

    def __init__(self, module: PtychoPINN, history: dict | None = None):
        self.module = module.eval()
        self.model_config: ModelConfig = module.config
        self.history = history or {}
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.module.to(self.device)

    @property
    def intensity_scale(self) -> float:
        return float(self.module.scaler.scale().detach().cpu())

    @property
    def probe(self) -> np.ndarray:
        """The (trained) probe, (N, N) or (M, N, N) modes, complex64."""
        return self.module.illumination.probe().detach().cpu().numpy().astype(np.complex64)

    def set_probe(self, probe: np.ndarray) -> None:
        """Replace the probe (same shape as :attr:`probe`), e.g. by its orthogonalised modes."""
        probe = np.asarray(probe, np.complex64)
        parameter = self.module.illumination.probe_ri
        with torch.no_grad():
            parameter.copy_(torch.as_tensor(np.stack([probe.real, probe.imag])))

    def payload_bytes(self) -> bytes:
        buffer = io.BytesIO()
        state = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        torch.save(state, buffer)
        return buffer.getvalue()

    def predict(self, inputs, batch_size: int = DEFAULT_PREDICT_BATCH,
                central_px: int | None = None) -> np.ndarray:
        """``inputs = [X_scaled (B, N, N, C), offsets (B, 1, 2, C)]`` -> complex64 (B, N, N, 1).

        ``central_px``: the caller uses only the central ``central_px`` pixels of each patch
        (see ``ptycho.backends.base``); up to N/2 this skips the border branch.
        """
        x_all, offsets_all = inputs
        x_all = np.asarray(x_all, np.float32)
        channels = self.model_config.gridsize ** 2
        if x_all.ndim != 4 or x_all.shape[-1] != channels or x_all.shape[1] != self.model_config.N:
            raise InputError(
                "input does not match the model", "predict inputs",
                f"(B, {self.model_config.N}, {self.model_config.N}, {channels}) for this "
                f"gridsize-{self.model_config.gridsize} model (regroup the data with "
                f"gridsize={self.model_config.gridsize})", f"shape {tuple(x_all.shape)}")
        rel_all = offsets_to_torch(offsets_all)
        central_only = skips_border(central_px, self.model_config.N)
        outputs = []
        with torch.inference_mode():
            for lo in range(0, len(x_all), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(
                    np.moveaxis(x_all[lo:lo + batch_size], -1, 1))).to(self.device)
                rel = torch.from_numpy(rel_all[lo:lo + batch_size]).to(self.device)
                obj = self.module.predict_object(x, rel, central_only)
                outputs.append(obj[:, 0].cpu().numpy())
        result = np.concatenate(outputs) if outputs else np.zeros((0, x_all.shape[1], x_all.shape[2]))
        return result[..., None].astype(np.complex64)


def load_model(manifest: dict, payload: bytes, probe: np.ndarray) -> TorchTrainedModel:
    """Rebuild the network from the manifest and load the state dict (``weights_only=True``).

    Raises
    ------
    ArchiveError
        The payload is not a plain state dict of tensors (e.g. a pickle that would run code:
        refused by ``weights_only``) or does not fit the rebuilt network.
    """
    model_cfg = ModelConfig(**manifest["model_config"])
    module = PtychoPINN(model_cfg, probe, float(manifest["intensity_scale"]))
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"a {type(state).__name__} instead of a state dict")
        module.load_state_dict(state)
    except Exception as exc:  # UnpicklingError (unsafe pickle), RuntimeError (shapes), ...
        raise ArchiveError("unsafe or invalid weights", PAYLOAD_NAME,
                           "a torch state dict of tensors written by this model configuration "
                           "(nothing else is loaded; code in it is never run)",
                           first_line(exc, with_type=True, max_chars=200)) from None
    return TorchTrainedModel(module, manifest.get("history", {}))
