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


def first_line(exc: BaseException, *, with_type: bool = False, max_chars: int | None = None
               ) -> str:
    """The first line of an exception's message, to quote as the ``actual`` of an InputError.

    Parameters
    ----------
    exc : BaseException
        The exception caught (e.g. an h5py ``OSError``).
    with_type : bool
        Prefix the exception's type name: ``"OSError: ..."``.
    max_chars : int, optional
        Keep at most this many characters of the line (default: all).

    Returns
    -------
    str
        The first line of the stripped message (prefixed with the type name when
        ``with_type``); the type name alone when the message is empty.
    """
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    line = lines[0] if max_chars is None else lines[0][:max_chars]
    return f"{type(exc).__name__}: {line}" if with_type else line


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
