"""Exception types shared by every layer of ptychopinn.

Kept free of heavy imports: ptychodus unpickles exceptions raised in its worker process, which
re-imports this module in the parent (GUI) process.

Every user-facing error renders as one line::

    <what> in <where>: <expected> (got <actual>)

The CLI prints ``error: <that line>`` and exits with status 2 for :class:`InputError`.
"""

from __future__ import annotations


class PtychoError(Exception):
    """Base class of all errors raised on purpose by ptychopinn."""


class InputError(PtychoError, ValueError):
    """Bad user input: a malformed file, an invalid option, a missing path.

    Parameters
    ----------
    what : str
        The problem, e.g. ``"missing key"`` or ``"non-finite values"``.
    where : str
        The file and key (``"scan.npz:diff3d"``), option (``"--gridsize"``) or field.
    expected : str
        What would have been accepted.
    actual : str, optional
        What was found.
    """

    def __init__(self, what: str, where: str, expected: str, actual: str | None = None):
        self.what = what
        self.where = where
        self.expected = expected
        self.actual = actual
        message = f"{what} in {where}: {expected}"
        if actual is not None:
            message += f" (got {actual})"
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.what, self.where, self.expected, self.actual))


class ArchiveError(InputError):
    """A model archive that is missing, truncated, tampered with or of an unknown format."""


class BackendUnavailableError(PtychoError):
    """The requested backend (torch or tensorflow) is not installed."""


class TrainingInterrupted(PtychoError):
    """Training stopped early by a signal; a resumable checkpoint was written.

    ``exit_code`` is the CLI's exit status: 128 + the signal number (130 SIGINT, 143 SIGTERM).
    ``is_global_zero`` is False in a non-zero rank of a distributed run, which wrote nothing
    (rank 0 writes and reports).
    """

    exit_code = 130
    is_global_zero = True


class TrainingDiverged(PtychoError):
    """The training loss became NaN or infinite; the best weights so far were kept (exit 3).

    ``is_global_zero``: as for :class:`TrainingInterrupted`.
    """

    exit_code = 3
    is_global_zero = True
