"""Profiles (DESIGN 9): several Criteo apps behind one proxy, one port or socket each.

Pure work on the YAML's mappings and the parsed configs: which keys a profile
may override, how it starts from the top level (key by key), and the rules
across profiles (names, listen addresses, token stores). ``config`` parses
each profile's merged mapping like the top level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from proxy.config.schema import DEFAULT_PROFILE, Config, ConfigError

PROFILE_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
OVERRIDABLE: Final = (
    "listen",
    "credentials",
    "tokens",
    "retry",
    "limits",
    "rate_limit",
    "security",
)
SHARED: Final = ("upstream", "logging", "console", "coordination")
# Keys that name one value two ways: a profile that names one replaces both inherited.
_ONE_OF: Final = {
    "credentials": ("client_secret", "client_secret_file"),
    "security": ("api_keys", "api_keys_file"),
}


def merge_profiles(
    top: Mapping[str, object], profiles: object
) -> list[tuple[str, dict[str, object]]]:
    """Each profile's whole mapping: the top level, overridden key by key.

    Its errors name ``profiles.<name>.<key>``.
    """
    if profiles is None:
        return []
    if not isinstance(profiles, Mapping):
        raise ConfigError("profiles: expected a mapping of profile names to their settings")
    merged: list[tuple[str, dict[str, object]]] = []
    for name, overrides in profiles.items():
        if not isinstance(name, str) or not PROFILE_NAME.fullmatch(name) or name == DEFAULT_PROFILE:
            raise ConfigError(
                f"profiles.{name}: a profile name is lower case, starts with a letter, holds "
                "letters, digits, - and _, at most 32 of them, and is not 'default'"
            )
        key = f"profiles.{name}"
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{key}: expected a mapping of sections")
        for section in overrides:
            if section in SHARED:
                raise ConfigError(
                    f"{key}.{section}: shared by every profile; set it at the top level only"
                )
            if section not in OVERRIDABLE:
                raise ConfigError(
                    f"{key}.{section}: unknown key (a profile may set: {', '.join(OVERRIDABLE)})"
                )
        listen = overrides.get("listen")
        if not isinstance(listen, Mapping) or not ({"port", "unix_socket"} & set(listen)):
            raise ConfigError(
                f"{key}.listen: required: each profile listens on a port or unix_socket of "
                "its own (e.g. listen: {port: 8081})"
            )
        whole = {section: value for section, value in top.items() if section != "profiles"}
        for section, value in overrides.items():
            whole[section] = _override(top.get(section), value, section)
        credentials = whole.get("credentials")
        credentials = dict(credentials) if isinstance(credentials, Mapping) else {}
        credentials.setdefault("token_store", default_token_store(name))
        whole["credentials"] = credentials
        merged.append((name, whole))
    return merged


def _override(base: object, value: object, section: str) -> object:
    """VALUE over BASE, key by key (nested mappings too); anything else replaces."""
    if not isinstance(base, Mapping) or not isinstance(value, Mapping):
        return value
    result = dict(base)
    alternatives = _ONE_OF.get(section, ())
    if any(k in value for k in alternatives):
        # A profile that names its secret (or keys) replaces the inherited one, either way.
        for alternative in alternatives:
            result.pop(alternative, None)
    for key, item in value.items():
        result[key] = _override(result.get(key), item, key)
    return result


def check_profiles_apart(configs: tuple[Config, ...]) -> None:
    """No two profiles on one port or socket, nor authorization-code apps on one store."""
    ports: dict[int, str] = {}
    sockets: dict[str, str] = {}
    stores: dict[str, str] = {}
    code_apps: dict[str, str] = {}
    for config in configs:
        key = "" if config.name == DEFAULT_PROFILE else f"profiles.{config.name}."
        listen = config.listen
        if listen.unix_socket:
            other = sockets.setdefault(listen.unix_socket, config.name)
            if other != config.name:
                raise ConfigError(
                    f"{key}listen.unix_socket: {listen.unix_socket} is already the socket of "
                    f"profile {other}"
                )
        elif listen.port:  # 0 is any free port: never a clash
            other = ports.setdefault(listen.port, config.name)
            if other != config.name:
                raise ConfigError(
                    f"{key}listen.port: {listen.port} is already the port of profile {other}"
                )
        credentials = config.credentials
        if credentials.grant_type == "authorization_code" and config.coordination.enabled:
            other = code_apps.setdefault(credentials.client_id, config.name)
            if other != config.name:
                raise ConfigError(
                    f"{key}credentials.client_id: profile {other} is an authorization-code "
                    "app with the same client id; with coordination on, they would be one "
                    "member twice over one refresh token: keep one profile per app"
                )
        if credentials.grant_type == "authorization_code":
            other = stores.setdefault(credentials.token_store, config.name)
            if other != config.name:
                raise ConfigError(
                    f"{key}credentials.token_store: {credentials.token_store} already holds "
                    f"the refresh token of profile {other}; give each its own file"
                )


def default_token_store(name: str) -> str:
    return f"~/.config/criteo-proxy/tokens-{name}.json"
