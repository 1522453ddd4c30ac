"""Run control shared by the training workflow and both backends (stdlib only).

Graceful interruption of training by SIGINT (Ctrl+C) or SIGTERM (batch schedulers):
:func:`guard` (installed by the training workflow) installs handlers that only *record* the
first signal; the backends poll :func:`pending` after every optimiser step and, when a signal
arrived, leave their training loop by raising :class:`StopTraining`, carrying the best weights
so far and the resumable state as a :class:`Checkpoint`. The training workflow then writes the
best weights (``wts.h5.zip``) and the checkpoint (:mod:`ptycho.workflows.resume` reads and
writes its files) and raises :class:`ptycho.errors.TrainingInterrupted` with exit status
128 + signal number (130 for SIGINT, 143 for SIGTERM).

A second signal while the first is being handled kills the process at once (default action);
every file ptychopinn writes is atomic, so earlier outputs stay intact.

This module sits below ``ptycho.backends`` and ``ptycho.workflows`` and imports neither.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: File name of each backend's serialised training state beside ``resume.json``.
STATE_NAMES = {"pytorch": "resume.pt", "tensorflow": "resume.npz"}


def signal_name(signum: int) -> str:
    """'SIGINT', 'SIGTERM', ... for a signal number."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum: int) -> int:
    """The shell's exit status of a process ended by ``signum``: 128 + signum."""
    return 128 + int(signum)


class StopTraining(Exception):
    """Raised by a backend to leave its training loop early; carries what the workflow saves.

    Attributes
    ----------
    reason : {'signal', 'nonfinite'}
    signum : int or None
        The signal that stopped training (reason 'signal').
    message : str
        What happened, e.g. ``"training loss became nan at epoch 3, step 7"``.
    model : TrainedModel or None
        The best weights so far (the current weights when no epoch completed; None when no
        usable weights exist).
    checkpoint : Checkpoint or None
        The resumable state (reason 'signal' only).
    """

    def __init__(self, reason: str, message: str, *, signum: int | None = None,
                 model=None, checkpoint=None):
        super().__init__(message)
        self.reason = reason
        self.signum = signum
        self.message = message
        self.model = model
        self.checkpoint = checkpoint


@dataclass
class Checkpoint:
    """The resumable state of an interrupted run.

    ``state`` holds the backend's serialised state (bytes of ``state_name``); ``progress`` is
    JSON-safe with at least ``epochs_completed`` (int) and ``history`` (per-epoch lists).
    ``config`` and ``data`` are filled in when read from disk
    (:func:`ptycho.workflows.resume.read_checkpoint`).
    """

    backend: str
    state: bytes
    progress: dict
    config: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    source: str = ""

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.backend]

    @property
    def epochs_completed(self) -> int:
        return int(self.progress.get("epochs_completed", 0))


class SignalReceived(Exception):
    """Raised inside a backend's loop (from a per-step callback) when :func:`pending` is set."""

    def __init__(self, signum: int):
        super().__init__(f"{signal_name(signum)} received")
        self.signum = signum


class _Guard:
    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def handle(self, signum, frame) -> None:
        if self.signum is not None:
            # Second signal: give up at once with the default action.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        log.warning("%s received: stopping after the current training step and saving a "
                    "resumable checkpoint (send it again to abort at once)", signal_name(signum))


_active: list[_Guard] = []


def pending() -> int | None:
    """The signal number received during the innermost active :func:`guard`, else None."""
    return _active[-1].signum if _active else None


@contextlib.contextmanager
def guard() -> Iterator[_Guard]:
    """Record SIGINT/SIGTERM instead of dying, for the duration of the block.

    Only the main thread can install signal handlers; elsewhere (e.g. a GUI worker thread) the
    block runs unguarded and :func:`pending` stays None. Previous handlers are restored on exit.
    """
    state = _Guard()
    installed = threading.current_thread() is threading.main_thread()
    if installed:
        for signum in SIGNALS:
            state.previous[signum] = signal.getsignal(signum)
            signal.signal(signum, state.handle)
    _active.append(state)
    try:
        yield state
    finally:
        _active.remove(state)
        if installed:
            for signum, handler in state.previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
