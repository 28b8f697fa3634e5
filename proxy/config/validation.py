"""The rules a parsed configuration must keep; each failure names the key and the fix."""

from __future__ import annotations

import re
from typing import Final

from proxy.config.addresses import (
    parse_host,
    parse_origin,
    parse_plain_url,
    parse_redis_url,
    parse_url,
    shown_redis_url,
)
from proxy.config.schema import Config, ConfigError

# The history is memory only: bounded in count here, and in bytes by history.py.
MAX_CONSOLE_HISTORY: Final = 100_000


def validate_config(config: Config) -> None:
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
    _validate_transient(config)
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
    history = config.console.history
    if not 0 <= history <= MAX_CONSOLE_HISTORY:
        raise ConfigError(
            f"console.history: expected 0-{MAX_CONSOLE_HISTORY} requests, got {history}"
        )
    _validate_coordination(config)


# What `coordination:` needs that a single proxy does not (the extra of pyproject.toml).
COORDINATION_LIBRARIES: Final = ("redis", "cryptography")
COORDINATION_INSTALL: Final = "pip install 'criteo-proxy[redis]'"
_MIN_ENCRYPTION_KEY_BYTES: Final = 32
_KEY_PREFIX: Final = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")


def _validate_coordination(config: Config) -> None:
    coordination = config.coordination
    _require_positive("coordination.timeout", coordination.timeout)
    if not _KEY_PREFIX.fullmatch(coordination.key_prefix):
        raise ConfigError(
            "coordination.key_prefix: expected 1-64 letters, digits and . _ : / -, got "
            f"{coordination.key_prefix!r}"
        )
    for key in ("encryption_key", "previous_encryption_key"):
        value = getattr(coordination, key)
        if value is not None:
            decode_encryption_key(f"coordination.{key}", value.reveal())
    if coordination.redis_url is None:
        return
    url = coordination.redis_url.reveal()
    why = parse_redis_url(url)
    if why is not None:
        raise ConfigError(
            "coordination.redis_url: expected redis://[user:password@]host:port/db, "
            f"rediss://... or unix:///path.sock?db=0; {shown_redis_url(url)}: {why}"
        )
    if coordination.ca_file is not None:
        _validate_ca_file(coordination.ca_file, key="coordination.ca_file")
    import importlib.util  # here: only a config with coordination pays for it

    missing = [name for name in COORDINATION_LIBRARIES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"coordination.redis_url: needs {' and '.join(missing)}, which are not installed: "
            f"{COORDINATION_INSTALL}"
        )


def decode_encryption_key(key: str, text: str) -> bytes:
    """The bytes of a base64 key of at least 32 bytes; the error never shows the value."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) < _MIN_ENCRYPTION_KEY_BYTES:
        raise ConfigError(
            f"{key}: expected base64 of at least {_MIN_ENCRYPTION_KEY_BYTES} random bytes "
            "(e.g. `openssl rand -base64 32`); the value is not shown"
        )
    return raw


_METHOD: Final = re.compile(r"[A-Z]{1,20}")
MAX_TRANSIENT_ATTEMPTS: Final = 10


def _validate_transient(config: Config) -> None:
    transient = config.retry.transient
    if not 0 <= transient.attempts <= MAX_TRANSIENT_ATTEMPTS:
        raise ConfigError(
            f"retry.transient.attempts: expected 0-{MAX_TRANSIENT_ATTEMPTS} (0 = off), "
            f"got {transient.attempts}"
        )
    for i, status in enumerate(transient.statuses):
        if status in (401, 429):
            raise ConfigError(
                f"retry.transient.statuses[{i}]: {status} keeps its own rule (DESIGN 3.2 / "
                "3.5); remove it from the list"
            )
        if not 400 <= status <= 599:
            raise ConfigError(
                f"retry.transient.statuses[{i}]: expected an error status 400-599, got {status}"
            )
    for i, method in enumerate(transient.methods):
        if not _METHOD.fullmatch(method):
            raise ConfigError(
                f"retry.transient.methods[{i}]: expected an upper-case method such as GET, "
                f"got {method!r}"
            )
    _require_positive("retry.transient.max_delay", transient.max_delay, allow_zero=True)


def validate_redirect_uri(key: str, value: str) -> None:
    """An http(s) URL that may carry a query (RFC 6749 3.1.2) but no fragment."""
    _validate_http_url(key, value, query_allowed=True)


def _validate_http_url(key: str, value: str, *, query_allowed: bool = False) -> None:
    shown = repr(value) if "@" not in value else "a URL with user info (not shown)"
    plain = parse_plain_url(value)  # nearly every URL: read without yarl
    if plain is not None:
        if plain.query and not query_allowed:
            raise ConfigError(f"{key}: must not carry a query, got {shown}")
        return
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


def _validate_ca_file(path: str, *, key: str = "upstream.ca_file") -> None:
    import ssl  # here: only a config with a CA file pays for it

    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        raise ConfigError(f"{key}: {path} holds no PEM certificate ({exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc


def _require_positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "more than 0"
        raise ConfigError(f"{key}: expected {bound}, got {value:g}")
