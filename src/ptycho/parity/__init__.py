"""Cross-backend parity: numerical checks, weight transfer and the end-to-end harness.

Modules (none imports PyTorch or TensorFlow at import time):

``checks``
    Component, model and loss-curve checks returning rows of a parity table
    (:func:`~ptycho.parity.checks.run_checks`); ``tests/parity/`` asserts on the same rows.
``weights``
    Weight transfer between the torch and Keras models (both directions),
    :func:`~ptycho.parity.weights.convert_archive` (``ptychopinn convert``) and
    :func:`~ptycho.parity.weights.load_initial_weights` (``train --init_weights``).
``optim``
    A Keras Adam with torch's update rule (used by the loss-curve check).
``harness`` / ``report``
    ``ptychopinn parity``: both backends' train -> save -> load -> infer cycles in
    subprocesses, logs, ``parity.json`` and ``parity_summary.md``.
"""

__all__ = ["checks", "harness", "optim", "report", "weights"]
