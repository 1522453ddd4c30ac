"""Argument helpers shared by the subcommands: dual spellings, real booleans, paths."""

from __future__ import annotations

import argparse
from typing import Any


def parse_bool(text: str) -> bool:
    """Parse a command-line boolean: true/false, yes/no, on/off, 1/0 (any case)."""
    value = str(text).strip().lower()
    if value in ("true", "t", "yes", "y", "on", "1"):
        return True
    if value in ("false", "f", "no", "n", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false (got {text!r})")


def add_option(parser: argparse.ArgumentParser, name: str, *aliases: str, **kwargs: Any) -> None:
    """Add ``--name`` accepting both ``--snake_case`` and ``--kebab-case`` spellings.

    ``default`` is ``None`` unless given, so that an unset flag can fall back to a config file.
    ``type=bool`` becomes :func:`parse_bool` (``--flag false`` really is False) and the flag may
    also be given bare (``--flag`` means True).
    """
    flags = [f"--{name}"]
    for spelling in (name.replace("-", "_"), name.replace("_", "-")):
        if f"--{spelling}" not in flags:
            flags.append(f"--{spelling}")
    flags.extend(aliases)
    kwargs.setdefault("default", None)
    kwargs.setdefault("dest", name.replace("-", "_"))
    if kwargs.get("type") is bool:
        kwargs["type"] = parse_bool
        kwargs.setdefault("nargs", "?")
        kwargs.setdefault("const", True)
        kwargs.setdefault("metavar", "{true,false}")
    parser.add_argument(*flags, **kwargs)


def ensure_output_dir(path, option: str) -> None:
    """Refuse an output folder that cannot be created or written, before any work is done.

    Creates nothing: the nearest existing ancestor must be a writable folder.
    """
    import os
    from pathlib import Path

    from ptycho.errors import InputError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError("output path is a file", option, "a folder (existing or new)", str(path))
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError("output path is not a folder", option,
                         "a folder path whose parents are folders", f"{ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError("output folder not writable", option, "a folder you can write to",
                         f"no write permission on {ancestor}")
