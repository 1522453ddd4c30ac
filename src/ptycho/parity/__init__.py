"""Cross-backend parity: numerical checks, weight transfer and the end-to-end harness.

Modules (none imports PyTorch or TensorFlow at import time):

``checks``
    Component, model and loss-curve checks returning rows of a parity table
    (:func:`~ptycho.parity.checks.run_checks`); ``tests/parity/`` asserts on the same rows.
``weights``
    Whole-model conversion between the backends and
    :func:`~ptycho.parity.weights.convert_archive` (``ptychopinn convert``), on the weight
    transfer of :mod:`ptycho.backends.weight_transfer` (both directions; also
    ``train --init_weights``).
``optim``
    A Keras Adam with torch's update rule (used by the loss-curve check).
``harness`` / ``report``
    ``ptychopinn parity``: both backends' train -> save -> load -> infer cycles in
    subprocesses, logs, ``parity.json`` and ``parity_summary.md``.
"""

__all__ = ["checks", "harness", "optim", "report", "weights"]
