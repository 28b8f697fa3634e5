"""Configuration: YAML file + environment + command-line flags -> frozen dataclasses.

All validation lives here, so that every other module can trust what it gets.
Errors name the key exactly as the user wrote it (``upstream.response_timeout``)
and say how to fix it; they never contain a secret.
"""

from __future__ import annotations

import dataclasses
import os
import re
import ssl
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Union

import yaml
from yarl import URL

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]
GrantType = Literal["client_credentials", "authorization_code"]

CONFIG_ENV_VAR: Final = "CRITEO_PROXY_CONFIG"
CLIENT_ID_ENV_VAR: Final = "CRITEO_CLIENT_ID"
CLIENT_SECRET_ENV_VAR: Final = "CRITEO_CLIENT_SECRET"  # noqa: S105 - a variable name

_ENV_REFERENCE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """A user error in the configuration: one line, naming the key or file, no secret."""


class Secret:
    """A string that never shows itself in a repr, a str() or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    unix_socket: str | None = None
    shutdown_grace: float = 30.0
    header_timeout: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamConfig:
    url: str = "https://api.criteo.com"
    token_url: str | None = None
    connect_timeout: float = 10.0
    response_timeout: float = 120.0
    read_timeout: float = 300.0
    max_connections: int = 100
    ca_file: str | None = None

    @property
    def effective_token_url(self) -> str:
        return self.token_url or f"{self.url}/oauth2/token"


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialsConfig:
    grant_type: GrantType = "client_credentials"
    client_id: str = ""
    client_secret: Secret = field(default_factory=lambda: Secret(""))
    client_secret_file: str | None = None
    redirect_uri: str | None = None
    token_store: str = "~/.config/criteo-proxy/tokens.json"  # noqa: S105 - a path


@dataclass(frozen=True, slots=True, kw_only=True)
class TokensConfig:
    refresh_margin: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    body_limit: int = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    max_body_bytes: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitConfig:
    enabled: bool = True
    max_wait: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityConfig:
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
    allowed_origins: tuple[str, ...] = ()
    read_only: bool = False
    allow_paths: tuple[str, ...] = ()
    deny_paths: tuple[str, ...] = ()
    api_keys: tuple[Secret, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingConfig:
    level: LogLevel = "info"
    format: LogFormat = "text"
    access_log: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    listen: ListenConfig = field(default_factory=ListenConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    credentials: CredentialsConfig = field(default_factory=CredentialsConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: str | None = None  # the file it came from, for messages; None = defaults


_SECTIONS: Final[dict[str, type]] = {
    f.name: typing.get_type_hints(Config)[f.name]
    for f in dataclasses.fields(Config)
    if f.name != "source"
}


def load_config(
    path: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Read FILE (or $CRITEO_PROXY_CONFIG, or nothing), apply flags, validate.

    ``overrides`` maps dotted keys (``listen.port``) to values given on the
    command line; they win over the file. The environment wins over the file
    for the credentials.
    """
    env = os.environ if environ is None else environ
    path = path or env.get(CONFIG_ENV_VAR) or None
    raw = _read_yaml(path) if path else {}
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        section_raw = raw.get(section)
        if section_raw is None:  # absent, or present with every key commented out
            section_raw = raw[section] = {}
        if not isinstance(section_raw, dict):
            raise ConfigError(f"{section}: expected a mapping, got {_type_name(section_raw)}")
        section_raw[key] = value
    return parse_config(raw, environ=env, source=path)


def parse_config(
    raw: Mapping[str, object], *, environ: Mapping[str, str], source: str | None = None
) -> Config:
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: unknown key (known: {', '.join(_SECTIONS)})"
            + (f" in {source}" if source else "")
        )
    sections: dict[str, object] = {}
    for name, cls in _SECTIONS.items():
        section_raw = raw.get(name)
        if section_raw is None:
            section_raw = {}
        if not isinstance(section_raw, Mapping):
            raise ConfigError(f"{name}: expected a mapping, got {_type_name(section_raw)}")
        sections[name] = _parse_section(cls, name, section_raw, environ)
    config = Config(**sections, source=source)  # type: ignore[arg-type]
    _validate(config)
    upstream = dataclasses.replace(config.upstream, url=config.upstream.url.rstrip("/"))
    config = dataclasses.replace(config, upstream=upstream)
    return dataclasses.replace(config, credentials=_resolve_credentials(config, raw, environ))


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
        raise ConfigError(f"{path}: expected a mapping of sections, got {_type_name(data)}")
    return data


def _parse_section(
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
        name: _parse_value(hints[name], f"{section}.{name}", raw[name], environ)
        for name in names
        if name in raw
    }
    return cls(**values)


def _parse_value(kind: object, key: str, value: object, environ: Mapping[str, str]) -> object:
    """Check VALUE against the annotation KIND; expand ${VAR} in strings."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _parse_value(inner, key, value, environ)
    if origin is Literal:
        text = _parse_value(str, key, value, environ)
        if text not in args:
            choices = " | ".join(str(a) for a in args)
            raise ConfigError(f"{key}: expected one of {choices}, got {text!r}")
        return text
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_type_name(value)}")
        return tuple(
            _parse_value(args[0], f"{key}[{i}]", item, environ) for i, item in enumerate(value)
        )
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_type_name(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {_type_name(value)}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number of seconds, got {_type_name(value)}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_type_name(value)}")
        return _expand_env(key, value, environ)
    if kind is Secret:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_type_name(value)}")
        return Secret(_expand_env(key, value, environ))
    raise TypeError(f"no parser for {kind!r}")  # a programming error, not a user one


def _expand_env(key: str, value: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(f"{key}: environment variable {name} is not set")
        return environ[name]

    return _ENV_REFERENCE.sub(replace, value)


def _validate(config: Config) -> None:
    listen, upstream = config.listen, config.upstream
    if not listen.host:
        raise ConfigError("listen.host: must not be empty")
    if not 0 <= listen.port <= 65535:
        raise ConfigError(f"listen.port: expected 0-65535, got {listen.port}")
    _require_positive("listen.shutdown_grace", listen.shutdown_grace, allow_zero=True)
    _require_positive("listen.header_timeout", listen.header_timeout)

    _validate_http_url("upstream.url", upstream.url)
    if upstream.token_url is not None:
        _validate_http_url("upstream.token_url", upstream.token_url)
    _require_positive("upstream.connect_timeout", upstream.connect_timeout)
    _require_positive("upstream.response_timeout", upstream.response_timeout)
    _require_positive("upstream.read_timeout", upstream.read_timeout)
    if upstream.max_connections < 1:
        raise ConfigError(
            f"upstream.max_connections: expected at least 1, got {upstream.max_connections}"
        )
    if upstream.ca_file is not None:
        _validate_ca_file(upstream.ca_file)

    credentials = config.credentials
    if credentials.redirect_uri is not None:
        validate_redirect_uri("credentials.redirect_uri", credentials.redirect_uri)

    _require_positive("tokens.refresh_margin", config.tokens.refresh_margin, allow_zero=True)
    if config.retry.body_limit < 0:
        raise ConfigError(f"retry.body_limit: expected 0 or more, got {config.retry.body_limit}")
    max_body = config.limits.max_body_bytes
    if max_body is not None and max_body < 1:
        raise ConfigError(f"limits.max_body_bytes: expected at least 1 or null, got {max_body}")
    _require_positive("rate_limit.max_wait", config.rate_limit.max_wait, allow_zero=True)

    security = config.security
    for i, host in enumerate(security.allowed_hosts):
        if parse_host(host) is None:
            raise ConfigError(
                f"security.allowed_hosts[{i}]: expected a host name or address with an "
                f"optional port (e.g. criteo-proxy or [::1]:8080), got {host!r}"
            )
    for i, origin in enumerate(security.allowed_origins):
        if parse_origin(origin) is None:
            raise ConfigError(
                f"security.allowed_origins[{i}]: expected scheme://host[:port] "
                f"(e.g. http://localhost:3000), got {origin!r}"
            )
    for key in ("allow_paths", "deny_paths"):
        for i, pattern in enumerate(getattr(security, key)):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"security.{key}[{i}]: not a valid regex: {exc}") from exc
    for i, api_key in enumerate(security.api_keys):
        if not api_key:
            raise ConfigError(f"security.api_keys[{i}]: must not be empty")


def _resolve_credentials(
    config: Config, raw: Mapping[str, object], environ: Mapping[str, str]
) -> CredentialsConfig:
    """Apply the environment over the file and read client_secret_file."""
    credentials = config.credentials
    raw_credentials = raw.get("credentials")
    given = raw_credentials if isinstance(raw_credentials, Mapping) else {}
    if given.get("client_secret") is not None and credentials.client_secret_file is not None:
        raise ConfigError(
            "credentials: set client_secret or client_secret_file, not both "
            "(remove one of them from the config file)"
        )
    client_id = environ.get(CLIENT_ID_ENV_VAR) or credentials.client_id
    secret = environ.get(CLIENT_SECRET_ENV_VAR) or ""
    if not secret and credentials.client_secret_file is not None:
        secret = _read_secret_file(credentials.client_secret_file)
    if not secret:
        secret = credentials.client_secret.reveal()
    if not client_id:
        raise ConfigError(
            f"credentials.client_id: not set; export {CLIENT_ID_ENV_VAR} "
            "or set credentials.client_id in the config file"
        )
    if not secret:
        raise ConfigError(
            f"credentials.client_secret: not set; export {CLIENT_SECRET_ENV_VAR} "
            "or set credentials.client_secret_file in the config file"
        )
    return dataclasses.replace(
        credentials,
        client_id=client_id,
        client_secret=Secret(secret),
        token_store=os.path.expanduser(credentials.token_store),
    )


def _read_secret_file(path: str) -> str:
    try:
        secret = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"credentials.client_secret_file: cannot read {path}: {exc.strerror or exc}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"credentials.client_secret_file: {path} is not UTF-8 text") from exc
    if not secret:
        raise ConfigError(f"credentials.client_secret_file: {path} is empty")
    return secret


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``Host``-style ``name[:port]`` / ``[v6][:port]`` -> (lower-case host, port or None)."""
    if not value or any(c in value for c in "/?#@\\ \t"):
        return None
    try:
        url = URL(f"http://{value}")
        host = url.raw_host
        port = url.explicit_port
    except ValueError:
        return None
    if not host:
        return None
    return host.lower(), port


def parse_url(text: str) -> URL | None:
    """TEXT as a URL, or None when yarl (or the IDNA codec behind it) cannot read it.

    The host is decoded here, inside the try: yarl decodes it lazily, and bad
    punycode (``https://xn--a.example``) would otherwise raise later, anywhere.
    """
    try:
        url = URL(text)
        url.host  # noqa: B018 - forces the IDNA decoding, see above
    except ValueError:  # UnicodeError (IDNA) is a ValueError
        return None
    return url


def parse_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` normalised (host lower-case), or None if it is not one."""
    url = parse_url(origin)
    if url is None or url.scheme not in ("http", "https") or not url.raw_host:
        return None
    if url.raw_path not in ("", "/") or url.query_string or url.fragment or url.user is not None:
        return None
    host = url.raw_host
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{url.explicit_port}" if url.explicit_port is not None else ""
    return f"{url.scheme}://{host.lower()}{port}"


def validate_redirect_uri(key: str, value: str) -> None:
    """An http(s) URL that may carry a query (RFC 6749 3.1.2) but no fragment."""
    _validate_http_url(key, value, query_allowed=True)


def _validate_http_url(key: str, value: str, *, query_allowed: bool = False) -> None:
    shown = repr(value) if "@" not in value else "a URL with user info (not shown)"
    url = parse_url(value)
    if url is None or url.scheme not in ("http", "https") or not url.raw_host:
        raise ConfigError(
            f"{key}: expected an http(s) URL such as https://api.criteo.com, got {shown}"
        )
    if url.user is not None or url.password is not None:
        raise ConfigError(f"{key}: must not carry user:password; the proxy adds the credentials")
    if url.fragment or "#" in value:
        raise ConfigError(f"{key}: must not carry a fragment (#...), got {shown}")
    if url.query_string and not query_allowed:
        raise ConfigError(f"{key}: must not carry a query, got {shown}")


def _validate_ca_file(path: str) -> None:
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        raise ConfigError(
            f"upstream.ca_file: {path} holds no PEM certificate ({exc.reason})"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"upstream.ca_file: cannot read {path}: {exc.strerror or exc}") from exc


def _require_positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "more than 0"
        raise ConfigError(f"{key}: expected {bound}, got {value:g}")


def _type_name(value: object) -> str:
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
