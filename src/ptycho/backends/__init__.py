"""Backend dispatch. Each backend package implements the same small API (see ``base``).

Backends are imported only when selected, so ``import ptycho`` and the CLI's ``--help`` never load
PyTorch or TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from ptycho.errors import BackendUnavailableError

_MODULES = {"pytorch": "ptycho.backends.pytorch", "tensorflow": "ptycho.backends.tensorflow"}
_INSTALL_HINTS = {
    "pytorch": "pip install 'torch>=2.2' 'lightning>=2.2' (or reinstall ptychopinn)",
    "tensorflow": "pip install 'ptychopinn[tensorflow]'",
}
_REQUIRED_MODULES = {"pytorch": ("torch", "lightning"), "tensorflow": ("tensorflow", "keras")}


def load_backend(name: str) -> ModuleType:
    """Import and return the backend package ``name`` ('pytorch' or 'tensorflow').

    Raises
    ------
    BackendUnavailableError
        When the backend's libraries are not installed; the message says what to install.
    ValueError
        For an unknown backend name.
    """
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(_MODULES)}")
    for required in _REQUIRED_MODULES[name]:
        if importlib.util.find_spec(required) is None:
            raise BackendUnavailableError(
                f"backend '{name}' needs the '{required}' package, which is not installed; "
                f"install it with: {_INSTALL_HINTS[name]}"
            )
    return importlib.import_module(_MODULES[name])
