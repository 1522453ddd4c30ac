"""Legacy ``ptycho.model`` facade, cheap to import (no backend, no model built at import).

Older ptychodus versions read ``ptycho.model.params()['intensity_scale']`` after loading a
model; :func:`params` returns the legacy mirror ``ptycho.params.cfg`` (a copy). Networks live in
``ptycho.backends.*`` and are built only when a workflow needs them.
"""

from __future__ import annotations

from ptycho.params import cfg, params

__all__ = ["cfg", "params"]
