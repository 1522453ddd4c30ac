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
