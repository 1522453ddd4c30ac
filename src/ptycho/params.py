"""Legacy global parameter mirror (``ptycho.params.cfg``), kept for ptychodus and old scripts.

Written by :func:`ptycho.config.config.update_legacy_dict` and by model loading
(``intensity_scale``). The core never reads it: configuration is passed explicitly.
"""

from __future__ import annotations

from typing import Any

cfg: dict[str, Any] = {}

_MISSING = object()


def get(key: str, default: Any = _MISSING) -> Any:
    """Return ``cfg[key]``; raise ``KeyError`` when unset and no default is given."""
    if key in cfg:
        return cfg[key]
    if default is _MISSING:
        raise KeyError(f"ptycho.params: '{key}' is not set")
    return default


def set(key: str, value: Any) -> None:
    """Set ``cfg[key] = value``."""
    cfg[key] = value


def params() -> dict[str, Any]:
    """Return a copy of the whole legacy dict (older ptychodus reads ``params()['intensity_scale']``)."""
    return dict(cfg)
