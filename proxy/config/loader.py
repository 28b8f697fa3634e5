"""Configuration: YAML file + environment + command-line flags -> the schema's dataclasses.

Every value is checked against its annotation here and against the rules of
``validation`` before anyone else sees it, so that every other module can trust
what it gets. Errors name the key exactly as the user wrote it
(``upstream.response_timeout``) and say how to fix it; they never contain a secret.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

import yaml

from proxy.config.profiles import check_profiles_apart, merge_profiles
from proxy.config.schema import (
    CLIENT_ID_ENV_VAR,
    CLIENT_SECRET_ENV_VAR,
    CONFIG_ENV_VAR,
    DEFAULT_PROFILE,
    Config,
    ConfigError,
    CredentialsConfig,
    Secret,
    SecurityConfig,
)
from proxy.config.typed_values import parse_section, type_name
from proxy.config.validation import validate_config

_SECTIONS: Final[dict[str, type]] = {
    f.name: typing.get_type_hints(Config)[f.name]
    for f in dataclasses.fields(Config)
    if f.name not in ("source", "name", "profiles")
}


def load_config(
    path: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    require_credentials: bool = True,
) -> Config:
    """Read FILE (or $CRITEO_PROXY_CONFIG, or nothing), apply flags, validate.

    ``overrides`` maps dotted keys (``listen.port``) to values given on the
    command line; they win over the file. The environment wins over the file
    for the credentials. Without REQUIRE_CREDENTIALS (``status``, which only
    asks a running proxy), missing credentials are no error.
    """
    env = os.environ if environ is None else environ
    path = path or env.get(CONFIG_ENV_VAR) or None
    raw = _read_yaml(path) if path else {}
    profiles = raw.pop("profiles", None)
    # --host / --port are the default profile's; the other flags name shared sections.
    listen_flags = {k: v for k, v in (overrides or {}).items() if k.startswith("listen.")}
    shared_flags = {k: v for k, v in (overrides or {}).items() if k not in listen_flags}
    _apply_flags(raw, shared_flags)
    top = {**raw}
    listen = raw.get("listen")
    if listen_flags:
        if isinstance(listen, dict):
            top["listen"] = {**listen}  # a copy: the profiles start from the file's
        _apply_flags(top, listen_flags)
    if profiles is not None:
        top["profiles"] = profiles
    return parse_config(
        top,
        environ=env,
        source=path,
        require_credentials=require_credentials,
        profile_base=raw,
    )


def _apply_flags(raw: dict[str, object], flags: Mapping[str, object]) -> None:
    for dotted, value in flags.items():
        section, key = dotted.split(".", 1)
        section_raw = raw.get(section)
        if section_raw is None:  # absent, or present with every key commented out
            section_raw = raw[section] = {}
        if not isinstance(section_raw, dict):
            raise ConfigError(f"{section}: expected a mapping, got {type_name(section_raw)}")
        section_raw[key] = value


def parse_config(
    raw: Mapping[str, object],
    *,
    environ: Mapping[str, str],
    source: str | None = None,
    require_credentials: bool = True,
    profile_base: Mapping[str, object] | None = None,
) -> Config:
    """The top level (profile ``default``) and every profile of ``profiles:``.

    Profiles start from PROFILE_BASE (default: the top level): the top level
    without the flags that are the default profile's alone (--host, --port).
    """
    top_raw = {key: value for key, value in raw.items() if key != "profiles"}
    top = _parse_profile(
        top_raw, environ=environ, source=source, require_credentials=require_credentials
    )
    profiles = tuple(
        _parse_profile(
            whole,
            environ=environ,
            source=source,
            require_credentials=require_credentials,
            name=name,
        )
        for name, whole in merge_profiles(
            top_raw if profile_base is None else profile_base, raw.get("profiles")
        )
    )
    check_profiles_apart((top, *profiles))
    return dataclasses.replace(top, profiles=profiles)


def _parse_profile(
    raw: Mapping[str, object],
    *,
    environ: Mapping[str, str],
    source: str | None,
    require_credentials: bool,
    name: str = DEFAULT_PROFILE,
) -> Config:
    """One profile's whole mapping; a profile's errors name ``profiles.<name>.<key>``."""
    prefix = "" if name == DEFAULT_PROFILE else f"profiles.{name}."
    unknown = sorted(set(raw) - set(_SECTIONS) - {"profiles"})
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown key (known: {', '.join([*_SECTIONS, 'profiles'])})"
            + (f" in {source}" if source else "")
        )
    sections: dict[str, object] = {}
    for section, cls in _SECTIONS.items():
        section_raw = raw.get(section)
        if section_raw is None:
            section_raw = {}
        if not isinstance(section_raw, Mapping):
            raise ConfigError(
                f"{prefix}{section}: expected a mapping, got {type_name(section_raw)}"
            )
        section_environ = environ
        if section == "credentials" and not require_credentials:
            section_environ = _EmptyWhenUnset(environ)
        sections[section] = parse_section(cls, prefix + section, section_raw, section_environ)
    config = Config(**sections, source=source, name=name)  # type: ignore[arg-type]
    try:
        validate_config(config)
    except ConfigError as exc:
        raise ConfigError(prefix + str(exc)) from exc
    upstream = dataclasses.replace(config.upstream, url=config.upstream.url.rstrip("/"))
    config = dataclasses.replace(config, upstream=upstream)
    credentials = _resolve_credentials(
        config, raw, environ, required=require_credentials, prefix=prefix
    )
    security = _resolve_api_keys(config, raw, prefix=prefix)
    return dataclasses.replace(config, credentials=credentials, security=security)


class _EmptyWhenUnset(Mapping[str, str]):
    """An environment in which an unset ${VAR} is empty rather than an error."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        return self._environ.get(name, "")

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def _read_yaml(path: str) -> dict[str, object]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type_name(data)}")
    return data


def _resolve_credentials(
    config: Config,
    raw: Mapping[str, object],
    environ: Mapping[str, str],
    *,
    required: bool,
    prefix: str,
) -> CredentialsConfig:
    """Apply the environment over the file (for ``default`` only) and read
    client_secret_file."""
    credentials = config.credentials
    raw_credentials = raw.get("credentials")
    given = raw_credentials if isinstance(raw_credentials, Mapping) else {}
    key = f"{prefix}credentials"
    if given.get("client_secret") is not None and credentials.client_secret_file is not None:
        raise ConfigError(
            f"{key}: set client_secret or client_secret_file, not both "
            "(remove one of them from the config file)"
        )
    # CRITEO_CLIENT_ID / CRITEO_CLIENT_SECRET are the default profile's (DESIGN 9).
    from_environment = environ if not prefix else {}
    client_id = from_environment.get(CLIENT_ID_ENV_VAR) or credentials.client_id
    secret = from_environment.get(CLIENT_SECRET_ENV_VAR) or ""
    if not secret and credentials.client_secret_file is not None and required:
        secret = _read_secret_file(credentials.client_secret_file, f"{key}.client_secret_file")
    if not secret:
        secret = credentials.client_secret.reveal()
    if not client_id and required:
        raise ConfigError(
            f"{key}.client_id: not set; export {CLIENT_ID_ENV_VAR} "
            "or set credentials.client_id in the config file"
            if not prefix
            else f"{key}.client_id: not set; set it in the profile (${{VAR}} works)"
        )
    if not secret and required:
        raise ConfigError(
            f"{key}.client_secret: not set; export {CLIENT_SECRET_ENV_VAR} "
            "or set credentials.client_secret_file in the config file"
            if not prefix
            else f"{key}.client_secret: not set; set client_secret or client_secret_file "
            "in the profile"
        )
    return dataclasses.replace(
        credentials,
        client_id=client_id,
        client_secret=Secret(secret),
        token_store=os.path.expanduser(credentials.token_store),
    )


def _resolve_api_keys(config: Config, raw: Mapping[str, object], *, prefix: str) -> SecurityConfig:
    """Read security.api_keys_file (one key per line) into api_keys: a key mounted as
    a file stays out of the process's environment (/proc/1/environ)."""
    security = config.security
    if security.api_keys_file is None:
        return security
    key = f"{prefix}security.api_keys_file"
    raw_security = raw.get("security")
    given = raw_security if isinstance(raw_security, Mapping) else {}
    if given.get("api_keys"):
        raise ConfigError(
            f"{key}: set api_keys or api_keys_file, not both (remove one of them from the "
            "config file)"
        )
    text = _read_secret_file(security.api_keys_file, key)
    api_keys = tuple(Secret(line.strip()) for line in text.splitlines() if line.strip())
    return dataclasses.replace(security, api_keys=api_keys)


def _read_secret_file(path: str, key: str) -> str:
    """The text of the file at PATH, named by KEY in errors; never empty."""
    try:
        secret = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{key}: {path} is not UTF-8 text") from exc
    if not secret:
        raise ConfigError(f"{key}: {path} is empty")
    return secret
