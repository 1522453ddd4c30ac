"""Small file helpers: atomic writes (temporary file in the destination folder, then rename)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The process umask, read once at import (os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``destination``; rename it over ``destination`` on success.

    On any exception the temporary file is removed and ``destination`` is left untouched, so a
    reader never sees a half-written file (a rename within one folder is atomic on POSIX). A
    process killed mid-write can leave a hidden ``.<name>.*.tmp`` file, never a partial
    ``destination``. The result gets the usual permissions (0666 minus the umask), not the
    private 0600 of a temporary file.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, destination)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(destination: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``destination`` atomically."""
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(destination: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``destination`` atomically."""
    write_bytes_atomic(destination, text.encode("utf-8"))
