"""ptychopinn: physics-informed neural network reconstruction of far-field ptychography scans.

The import package is ``ptycho`` (distribution ``ptychopinn``). Importing it loads only NumPy-free
metadata; backends (PyTorch, TensorFlow) load when a workflow needs them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ptychopinn")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
