"""YAML configuration files and the CLI precedence rule: explicit flag > config file > default.

A config file holds field names of :class:`~ptycho.config.config.TrainingConfig`,
:class:`~ptycho.config.config.InferenceConfig`, :class:`~ptycho.config.config.ModelConfig` or
:class:`~ptycho.config.config.ExecutionConfig`, either flat or with the model fields in a nested
``model:`` block::

    nepochs: 7
    nphotons: 1e9          # YAML 1.2 style floats are accepted
    model:
      N: 128
      gridsize: 2
      probe_big: false

Values are type-checked when the file is read (``1`` is accepted where a float is expected;
booleans must be YAML booleans; paths are strings; ``null`` only where the field is optional;
``train_data_file`` is one path or a list of paths, e.g. ``train_data_file: [a.npz, b.npz]``)
and range-checked by the ``validate_*`` functions when a configuration is built.

This module imports PyYAML; ``ptycho.config.config`` does not import it (it stays stdlib-only
for ptychodus's parent process).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import re
import types
import typing
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ptycho.config.config import (
    ExecutionConfig,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    validate_execution_config,
    validate_inference_config,
    validate_training_config,
)
from ptycho.errors import InputError, first_line

log = logging.getLogger(__name__)

_CONFIG_CLASSES = (TrainingConfig, InferenceConfig, ModelConfig, ExecutionConfig)
_DEPRECATED_ALIASES = {"n_images": "n_groups"}


# ---------------------------------------------------------------------------------------------
# Field introspection
# ---------------------------------------------------------------------------------------------

def _field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of the dataclass fields of ``cls`` (nested ``model`` excluded)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "model"}


def _known_fields() -> dict[str, list[Any]]:
    """Every field name a config file may set, with the types declared for it."""
    known: dict[str, list[Any]] = {}
    for cls in _CONFIG_CLASSES:
        for name, hint in _field_types(cls).items():
            known.setdefault(name, [])
            if hint not in known[name]:
                known[name].append(hint)
    return known


_MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))


# ---------------------------------------------------------------------------------------------
# Type checking and coercion
# ---------------------------------------------------------------------------------------------

class _TypeMismatch(Exception):
    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


def _union_args(hint: Any) -> tuple | None:
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(hint)
    return None


def _describe_type(hint: Any) -> str:
    args = _union_args(hint)
    if args is not None:
        parts = [_describe_type(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} or null" if type(None) in args else text
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return f"a non-empty list, each {_describe_type(typing.get_args(hint)[0])}"
    return {
        bool: "a boolean (true or false)",
        int: "an integer",
        float: "a number",
        str: "a string",
        Path: "a path (string)",
    }.get(hint, getattr(hint, "__name__", str(hint)))


def _coerce(value: Any, hint: Any, *, lenient: bool) -> Any:
    """Return ``value`` converted to ``hint`` or raise :class:`_TypeMismatch`.

    ``lenient`` (command-line values) also accepts strings for numbers and booleans, as argparse
    may deliver them untyped.
    """
    args = _union_args(hint)
    if args is not None:
        if value is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        # A string of digits is an integer where one is accepted (``devices: "2"`` means 2).
        if (isinstance(value, str) and int in members and str in members
                and re.fullmatch(r"[+-]?\d+", value.strip())):
            return int(value)
        for member in members:
            try:
                return _coerce(value, member, lenient=False)
            except _TypeMismatch:
                pass
        if lenient:
            for member in members:
                try:
                    return _coerce(value, member, lenient=True)
                except _TypeMismatch:
                    pass
        raise _TypeMismatch(_describe_type(hint))
    if value is None:
        raise _TypeMismatch(_describe_type(hint))
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        base = type(choices[0]) if choices else str
        if isinstance(value, base) and not isinstance(value, bool):
            return value  # membership is checked by the validate_* functions
        raise _TypeMismatch(f"a string ({_describe_type(hint)})")
    if typing.get_origin(hint) is list:
        if isinstance(value, (list, tuple)) and value:
            (item,) = typing.get_args(hint)
            return [_coerce(v, item, lenient=lenient) for v in value]
        raise _TypeMismatch(_describe_type(hint))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if lenient and isinstance(value, str):
            from ptycho.cli.common import parse_bool

            try:
                return parse_bool(value)
            except argparse.ArgumentTypeError:
                raise _TypeMismatch(_describe_type(hint)) from None
        raise _TypeMismatch(_describe_type(hint))
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if lenient and isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        raise _TypeMismatch(_describe_type(hint))
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if lenient and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _TypeMismatch(_describe_type(hint))
    if hint is str:
        if isinstance(value, str):
            return value
        raise _TypeMismatch(_describe_type(hint))
    if hint is Path:
        if isinstance(value, Path):
            return value
        if isinstance(value, str):
            return Path(value).expanduser()
        raise _TypeMismatch(_describe_type(hint))
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise _TypeMismatch(_describe_type(hint))


def _check_value(value: Any, hints: list[Any], where: str, *, lenient: bool) -> Any:
    expected = []
    for hint in hints:
        try:
            return _coerce(value, hint, lenient=lenient)
        except _TypeMismatch as exc:
            expected.append(exc.expected)
    raise InputError("wrong type", where, " or ".join(dict.fromkeys(expected)), _show(value))


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML, with its type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    return f"{value!r} ({type(value).__name__})"


# ---------------------------------------------------------------------------------------------
# YAML reading
# ---------------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as ``1e9`` (PyYAML reads them as strings)."""


_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)
_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


class ConfigValues(dict):
    """Field values read from a config file (flat: model fields sit beside the others).

    ``source`` is the file name used in error messages.
    """

    def __init__(self, values: Mapping[str, Any] = (), source: str = "<config>"):
        super().__init__(values)
        self.source = source


def _suggest(key: str, names: list[str]) -> str:
    lowered = {name.lower(): name for name in names}
    match = difflib.get_close_matches(key.lower().replace("-", "_"), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean '{lowered[match[0]]}'?)" if match else ""


def load_config_file(path: str | Path) -> ConfigValues:
    """Read a YAML config file into a flat ``{field name: value}`` dict.

    Parameters
    ----------
    path : path of the YAML file
        Flat keys, optionally with the model fields in a nested ``model:`` block; top-level keys
        that are ModelConfig fields go to the model as well. ``kebab-case`` keys are accepted.

    Returns
    -------
    ConfigValues
        A ``dict`` of field values (types checked and coerced; ``n_images`` kept as given) with a
        ``source`` attribute naming the file.

    Raises
    ------
    ptycho.errors.InputError
        Missing or unreadable file, invalid YAML (with the line number), unknown key (with the
        closest field name), wrong type (naming ``file:key``, the expected type and the value).
    """
    path = Path(path)
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", str(path), "an existing YAML config file") from None
    except IsADirectoryError:
        raise InputError("not a file", str(path), "a YAML config file", "a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("unreadable file", str(path), "a readable UTF-8 YAML file",
                         f"{type(exc).__name__}: {exc}") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{name}, line {mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise InputError("invalid YAML", where, "a valid YAML mapping of option names to values",
                         problem) from None
    if data is None:
        return ConfigValues({}, name)
    if not isinstance(data, dict):
        raise InputError("wrong structure", name, "a YAML mapping of option names to values",
                         type(data).__name__)

    known = _known_fields()
    names = sorted(known)
    values = ConfigValues({}, name)

    def _store(key: Any, value: Any, where_prefix: str, model_only: bool) -> None:
        if not isinstance(key, str):
            raise InputError("wrong key", f"{name}:{key!r}", "option names (strings)", repr(key))
        field_name = key.replace("-", "_")
        where = f"{name}:{where_prefix}{key}"
        allowed = sorted(_MODEL_FIELDS) if model_only else names
        if field_name not in allowed:
            owners = "ModelConfig" if model_only else "TrainingConfig/ModelConfig"
            raise InputError("unknown key", where,
                             f"one of the {owners} fields{_suggest(key, allowed)}", key)
        if field_name in values:
            raise InputError("duplicate key", where, "each option set once (flat or in 'model:')",
                             key)
        values[field_name] = _check_value(value, known[field_name], where, lenient=False)

    for key, value in data.items():
        if key == "model":
            if value is None:
                continue
            if not isinstance(value, dict):
                raise InputError("wrong type", f"{name}:model", "a mapping of ModelConfig fields",
                                 repr(value))
            for model_key, model_value in value.items():
                _store(model_key, model_value, "model.", True)
        else:
            _store(key, value, "", False)
    return values


# ---------------------------------------------------------------------------------------------
# Building configurations: explicit flag > file > default
# ---------------------------------------------------------------------------------------------

def _resolve_aliases(values: dict[str, Any], source: str, targets: set[str]) -> dict[str, Any]:
    """Map deprecated names (``n_images`` -> ``n_groups``) within one source, with a warning.

    Only aliases of a field in ``targets`` are mapped (and warned about).
    """
    values = dict(values)
    for old, new in _DEPRECATED_ALIASES.items():
        if new not in targets or values.get(old) is None:
            values.pop(old, None)
            continue
        message = f"'{old}' ({source}) is deprecated; use '{new}'"
        warnings.warn(message, DeprecationWarning, stacklevel=4)
        log.warning(message)
        value = values.pop(old)
        if values.get(new) is None:
            values[new] = value
    return values


def _merge(cls: type, cli_values: Mapping[str, Any], file_values: Mapping[str, Any] | None
           ) -> tuple[dict[str, Any], dict[str, str]]:
    """Merged field values for ``cls`` (and its ``model``) and the origin of each one."""
    hints = _field_types(cls)
    if any(f.name == "model" for f in dataclasses.fields(cls)):
        hints.update(_field_types(ModelConfig))
    source = getattr(file_values, "source", None)
    file_part = _resolve_aliases(dict(file_values or {}), source or "config values", set(hints))
    cli_part = _resolve_aliases({k: v for k, v in cli_values.items() if v is not None}, "command line",
                                set(hints))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in file_part.items():
        if key in hints:
            where = f"{source}:{key}" if source else key
            merged[key] = _check_value(value, [hints[key]], where, lenient=False)
            if source:
                origin[key] = where
    for key, value in cli_part.items():
        if key in hints:
            where = f"--{key}"
            merged[key] = _check_value(value, [hints[key]], where, lenient=True)
            origin[key] = where
    return merged, origin


def _instantiate(cls: type, merged: dict[str, Any]) -> Any:
    own = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in merged.items() if k in own and k != "model"}
    if "model" in own:
        kwargs["model"] = ModelConfig(**{k: v for k, v in merged.items() if k in _MODEL_FIELDS})
    return cls(**kwargs)


def _validated(config: Any, validate: Callable[[Any], None], origin: dict[str, str]) -> Any:
    """Run ``validate``; point a failing field at the flag or file line that set it."""
    try:
        validate(config)
    except InputError as exc:
        field_name = exc.where.rsplit(".", 1)[-1]
        if field_name in origin:
            raise InputError(exc.what, origin[field_name], exc.expected, exc.actual) from None
        raise
    return config


def build_training_config(cli_values: Mapping[str, Any],
                          file_values: Mapping[str, Any] | None = None) -> TrainingConfig:
    """Build and validate a :class:`TrainingConfig` (``N=0`` allowed: the data fix it).

    Parameters
    ----------
    cli_values : mapping
        Field name -> value from the command line; ``None`` means "flag not given". Keys that
        are not TrainingConfig/ModelConfig fields are ignored (so ``vars(args)`` may be passed).
    file_values : mapping, optional
        Values from :func:`load_config_file`.

    Precedence: explicit flag > file > dataclass default. ``n_images`` is a deprecated alias
    of ``n_groups`` (warning).
    """
    merged, origin = _merge(TrainingConfig, cli_values, file_values)
    config = _instantiate(TrainingConfig, merged)
    return _validated(config, lambda c: validate_training_config(c, require_n=False), origin)


def build_inference_config(cli_values: Mapping[str, Any],
                           file_values: Mapping[str, Any] | None = None) -> InferenceConfig:
    """Build and validate an :class:`InferenceConfig`; same rules as :func:`build_training_config`."""
    merged, origin = _merge(InferenceConfig, cli_values, file_values)
    config = _instantiate(InferenceConfig, merged)
    return _validated(config, validate_inference_config, origin)


def build_execution_config(cli_values: Mapping[str, Any],
                           file_values: Mapping[str, Any] | None = None) -> ExecutionConfig:
    """Build and validate an :class:`ExecutionConfig`; same rules as :func:`build_training_config`."""
    merged, origin = _merge(ExecutionConfig, cli_values, file_values)
    config = _instantiate(ExecutionConfig, merged)
    return _validated(config, validate_execution_config, origin)
