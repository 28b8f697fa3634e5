"""The configuration's schema: frozen dataclasses whose field names are the YAML keys.

Every key is optional; the defaults here are DESIGN.md's. ``config`` reads the
YAML, the environment and the flags into these; nothing here reads anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]
GrantType = Literal["client_credentials", "authorization_code"]

DEFAULT_PROFILE: Final = "default"  # the top level of the config (DESIGN 9)
CONFIG_ENV_VAR: Final = "CRITEO_PROXY_CONFIG"
CLIENT_ID_ENV_VAR: Final = "CRITEO_CLIENT_ID"
CLIENT_SECRET_ENV_VAR: Final = "CRITEO_CLIENT_SECRET"  # noqa: S105 - a variable name


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
class TransientRetryConfig:
    attempts: int = 2  # extra tries after the first; 0 = off
    statuses: tuple[int, ...] = (502, 503, 504)
    methods: tuple[str, ...] = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")  # RFC 9110 9.2.2
    max_delay: float = 10.0  # seconds: the most a request waits between tries in total


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    body_limit: int = 10 * 1024 * 1024
    transient: TransientRetryConfig = field(default_factory=TransientRetryConfig)


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
    api_keys_file: str | None = None  # one key per line, read into api_keys


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingConfig:
    level: LogLevel = "info"
    format: LogFormat = "text"
    access_log: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleConfig:
    enabled: bool = True
    history: int = 200  # requests kept in memory
    error_bodies: bool = True  # keep Criteo's JSON error bodies (<= 8 KiB) of failed requests


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinationConfig:
    """DESIGN 11: several proxies share one app's tokens and windows on Redis."""

    redis_url: Secret | None = None  # may carry a password: never shown
    key_prefix: str = "criteo-proxy"
    timeout: float = 0.5  # seconds for one Redis call
    ca_file: str | None = None  # extra CA bundle for rediss://
    encryption_key: Secret | None = None  # base64 of >= 32 random bytes; None: the secret's
    previous_encryption_key: Secret | None = None

    @property
    def enabled(self) -> bool:
        return self.redis_url is not None


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
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    coordination: CoordinationConfig = field(default_factory=CoordinationConfig)
    source: str | None = None  # the file it came from, for messages; None = defaults
    # Profiles (DESIGN 9): this one's name, and on the top level (``default``) the
    # others, each resolved whole (the top level with its overrides, key by key).
    name: str = DEFAULT_PROFILE
    profiles: tuple[Config, ...] = ()

    @property
    def all_profiles(self) -> tuple[Config, ...]:
        """``default`` first, then the others in the order of the file."""
        return (self, *self.profiles)

    def profile(self, name: str) -> Config:
        for config in self.all_profiles:
            if config.name == name:
                return config
        known = ", ".join(c.name for c in self.all_profiles)
        raise ConfigError(f"--profile: no profile named {name!r} (known: {known})")
