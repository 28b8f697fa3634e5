"""The config's values checked against the schema's annotations, ``${VAR}`` expanded.

Pure: a mapping from YAML and an environment in, a section's dataclass out, or a
ConfigError naming the key as the user wrote it.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from typing import Final, Literal, Union

from proxy.config.schema import ConfigError, Secret

_ENV_REFERENCE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_section(
    cls: type, section: str, raw: Mapping[object, object], environ: Mapping[str, str]
) -> object:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(
                f"{section}.{key}: unknown key (known in {section}: {', '.join(names)})"
            )
    values = {
        name: parse_value(hints[name], f"{section}.{name}", raw[name], environ)
        for name in names
        if name in raw
    }
    return cls(**values)


def parse_value(kind: object, key: str, value: object, environ: Mapping[str, str]) -> object:
    """Check VALUE against the annotation KIND; expand ${VAR} in strings."""
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):  # a nested section
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type_name(value)}")
        return parse_section(kind, key, value, environ)
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return parse_value(inner, key, value, environ)
    if origin is Literal:
        text = parse_value(str, key, value, environ)
        if text not in args:
            choices = " | ".join(str(a) for a in args)
            raise ConfigError(f"{key}: expected one of {choices}, got {text!r}")
        return text
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type_name(value)}")
        return tuple(
            parse_value(args[0], f"{key}[{i}]", item, environ) for i, item in enumerate(value)
        )
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {type_name(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {type_name(value)}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number of seconds, got {type_name(value)}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type_name(value)}")
        return _expand_env(key, value, environ)
    if kind is Secret:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type_name(value)}")
        return Secret(_expand_env(key, value, environ))
    raise TypeError(f"no parser for {kind!r}")  # a programming error, not a user one


def _expand_env(key: str, value: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(f"{key}: environment variable {name} is not set")
        return environ[name]

    return _ENV_REFERENCE.sub(replace, value)


def type_name(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)
