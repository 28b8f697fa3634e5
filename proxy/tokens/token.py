"""What the token part deals in: a token, its status, the error of getting one, and the
grant that says what to ask the token endpoint for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from proxy.errors import WHO, ErrorCode, ProxyError, Who
from proxy.tokens.recent_errors import RecentError

Clock = Callable[[], float]  # seconds, monotonic: token lifetimes are measured on it


class TokenError(ProxyError):
    """The token endpoint refused us or could not be reached; detail is safe to show."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        detail: str,
        *,
        oauth_error: str | None = None,
        endpoint_answered: bool = False,
    ) -> None:
        super().__init__(status, code, detail)
        self.oauth_error = oauth_error  # the endpoint's OAuth "error", when it gave one
        self.endpoint_answered = endpoint_answered  # with a 5xx or nonsense: not the network

    @property
    def who(self) -> Who:
        if self.code == "token_endpoint_unavailable" and self.endpoint_answered:
            return "criteo"
        return WHO[self.code]

    def copy(self) -> TokenError:
        return TokenError(
            self.status,
            self.code,
            self.detail,
            oauth_error=self.oauth_error,
            endpoint_answered=self.endpoint_answered,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in_seconds: float
    obtained_at: float  # on the provider's clock, taken when the request was sent
    renew_at: float  # obtained_at + expires_in - margin: the cache drops it then

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.expires_in_seconds


TokenState = Literal["valid", "renewing", "backing_off", "failing", "none"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenStatus:
    state: TokenState
    expires_in_seconds: float | None
    last_error: str | None
    backoff_seconds: float
    fetched_at: float | None  # epoch seconds
    recent_errors: tuple[RecentError, ...] = ()  # newest first


# Sends one form to the token endpoint: the token, or a TokenError.
TokenRequest = Callable[[Mapping[str, str]], Awaitable[Token]]


class Grant(Protocol):
    """What to send to the token endpoint, and whom to blame when it says no."""

    @property
    def cache_key(self) -> str: ...

    @property
    def rotates(self) -> bool:
        """Whether a token request spends something (a refresh token) that must be stored."""

    def rejection_hint(self, oauth_error: str) -> str: ...

    async def obtain(self, request: TokenRequest) -> Token:
        """One token through REQUEST, with whatever the grant keeps (a rotated refresh
        token) stored before it is returned, and so before it is used."""

    def secrets(self) -> list[str]: ...
