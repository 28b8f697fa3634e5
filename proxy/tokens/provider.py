"""Access tokens: the TLRU cache, single flight and back-off, whatever the grant.

Knows the client side of aiohttp only; nothing here answers an HTTP request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol
from urllib.parse import urlencode

import aiohttp
from cachetools import TLRUCache
from yarl import URL

from proxy.errors import ErrorCode, ProxyError, describe
from proxy.tokens.redaction import redact

log = logging.getLogger("criteo_proxy.tokens")

Clock = Callable[[], float]  # seconds, monotonic: token lifetimes are measured on it

FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
_MAX_TOKEN_ANSWER_BYTES: Final = 64 * 1024
_MAX_EXPIRES_IN_SECONDS: Final = 366 * 24 * 3600  # rejects inf and absurd lifetimes
_BACKOFF_FIRST_SECONDS: Final = 1.0
_BACKOFF_MAX_SECONDS: Final = 30.0


class TokenError(ProxyError):
    """The token endpoint refused us or could not be reached; detail is safe to show."""

    def __init__(
        self, status: int, code: ErrorCode, detail: str, *, oauth_error: str | None = None
    ) -> None:
        super().__init__(status, code, detail)
        self.oauth_error = oauth_error  # the endpoint's OAuth "error", when it gave one

    def copy(self) -> TokenError:
        return TokenError(self.status, self.code, self.detail, oauth_error=self.oauth_error)


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


class TokenProvider:
    """Hands out a valid access token, fetching one at most at a time.

    However many requests find the cache empty together, one POST is in flight
    and the rest await its result. After a failure, fetches back off (1 s
    doubling to 30 s) and requests in the window fail fast with the last error.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        grant: Grant,
        *,
        token_url: str,
        margin_seconds: float,
        timeout_seconds: float,
        http_proxy: str | None = None,
        clock: Clock = time.monotonic,
        on_fetch: Callable[[bool], None] | None = None,
    ) -> None:
        self._session = session
        self._http_proxy = http_proxy
        self._grant = grant
        self._token_url = token_url
        self._shown_url = str(URL(token_url).with_user(None).with_query(None))
        self._margin_seconds = margin_seconds
        self._timeout_seconds = timeout_seconds
        self._clock = clock
        self._on_fetch = on_fetch  # told True / False after each token request, for metrics
        self._cache: TLRUCache[str, Token] = TLRUCache(maxsize=8, ttu=_renew_at, timer=clock)
        # The token last taken from the cache, for the hot path (see cached_token).
        self._current: Token | None = None
        self._inflight: asyncio.Task[Token | TokenError] | None = None
        self._last_error: TokenError | None = None
        self._failures = 0
        self._retry_at = 0.0
        self.fetched_at: float | None = None  # epoch seconds of the last token obtained

    @property
    def grant(self) -> Grant:
        return self._grant

    @property
    def last_error(self) -> TokenError | None:
        return self._last_error

    def status(self) -> TokenStatus:
        """The token as the console shows it: never the token itself."""
        token = self.cached_token()
        if self._inflight is not None:
            state: TokenState = "renewing"
        elif token is not None:
            state = "valid"
        elif self._last_error is not None:
            state = "backing_off" if self.backoff_remaining_seconds() > 0 else "failing"
        else:
            state = "none"
        expires_in = None if token is None else max(0.0, token.expires_at - self._clock())
        return TokenStatus(
            state=state,
            expires_in_seconds=expires_in,
            last_error=None if self._last_error is None else self._last_error.detail,
            backoff_seconds=self.backoff_remaining_seconds(),
            fetched_at=self.fetched_at,
        )

    def cached_token(self) -> Token | None:
        # Every request asks, twice: a look at the token in hand is cheaper than the
        # cache's own expiry bookkeeping, and says the same (valid until renew_at).
        token = self._current
        if token is not None and self._clock() < token.renew_at:
            return token
        token = self._current = self._cache.get(self._grant.cache_key)
        return token

    def backoff_remaining_seconds(self) -> float:
        if self._last_error is None:
            return 0.0
        return max(0.0, self._retry_at - self._clock())

    async def get_token(self) -> Token:
        token = self.cached_token()
        if token is not None:
            return token
        if self._inflight is None:
            if self._last_error is not None and self._clock() < self._retry_at:
                raise self._last_error.copy()
            self._inflight = asyncio.get_running_loop().create_task(self._fetch())
            self._inflight.add_done_callback(self._forget_inflight)
        # shield: a client that goes away must not cancel the fetch others await.
        outcome = await asyncio.shield(self._inflight)
        if isinstance(outcome, TokenError):
            raise outcome.copy()
        return outcome

    def invalidate(self, token: Token) -> None:
        """Drop TOKEN after a 401, unless a newer token has replaced it meanwhile."""
        key = self._grant.cache_key
        if self._current is token:
            self._current = None
        if self._cache.get(key) is token:
            del self._cache[key]

    async def warm_up(self) -> None:
        """Fetch a token at start; a failure is logged, never raised."""
        try:
            await self.get_token()  # success is logged by the fetch itself
        except TokenError as exc:
            log.warning("could not obtain a token at start (requests will retry): %s", exc.detail)

    async def aclose(self, *, wait_seconds: float = 0.0) -> None:
        """Before the session closes: let a fetch in flight that spends a refresh token
        finish and store what it got (for at most WAIT_SECONDS), cancel any other."""
        task = self._inflight
        if task is None or task.done():
            return
        if self._grant.rotates and wait_seconds > 0:
            log.info(
                "waiting up to %g s for the refresh in flight, so that the refresh token "
                "Criteo rotates is stored",
                wait_seconds,
            )
            done, _ = await asyncio.wait({task}, timeout=wait_seconds)
            if done:
                return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._grant.rotates:
            log.error(
                "shutdown cut a refresh in flight: Criteo may have rotated the refresh "
                "token without this process storing it; if the next start fails with "
                "invalid_grant, run `criteo-proxy authorize` again (a longer "
                "listen.shutdown_grace lets a refresh finish)"
            )

    def _forget_inflight(self, task: asyncio.Task[Token | TokenError]) -> None:
        self._inflight = None

    async def _fetch(self) -> Token | TokenError:
        try:
            token = await self._grant.obtain(self._request_token)
        except TokenError as exc:
            self._failures += 1
            delay = min(_BACKOFF_FIRST_SECONDS * 2 ** (self._failures - 1), _BACKOFF_MAX_SECONDS)
            self._retry_at = self._clock() + delay
            self._last_error = exc
            if self._on_fetch is not None:
                self._on_fetch(False)
            log.warning("token request failed (next attempt in %.0f s): %s", delay, exc.detail)
            return exc
        self._failures = 0
        self._last_error = None
        self.fetched_at = time.time()
        self._cache[self._grant.cache_key] = token
        if self._on_fetch is not None:
            self._on_fetch(True)
        log.info("token fetched, valid for %.0f s", token.expires_in_seconds)
        return token

    async def _request_token(self, fields: Mapping[str, str]) -> Token:
        form = urlencode(fields)
        sent_at = self._clock()
        try:
            async with asyncio.timeout(self._timeout_seconds):
                async with self._session.post(
                    self._token_url,
                    data=form.encode(),
                    headers={"Content-Type": FORM_CONTENT_TYPE, "Accept": "application/json"},
                    proxy=self._http_proxy,
                    allow_redirects=False,
                ) as response:
                    body = await read_bounded(response.content, _MAX_TOKEN_ANSWER_BYTES)
                    status = response.status
        except TimeoutError as exc:
            raise self._error(
                504,
                "token_endpoint_unavailable",
                f"POST {self._shown_url} did not answer within {self._timeout_seconds:g} s",
            ) from exc
        except aiohttp.ClientError as exc:
            raise self._error(
                502, "token_endpoint_unavailable", f"POST {self._shown_url} failed: {describe(exc)}"
            ) from exc
        answer = _parse_json_object(body)
        if status == 200:
            return self._parse_token(answer, sent_at)
        if 400 <= status < 500 and status != 429:
            oauth_error = str(answer.get("error") or "") if answer else ""
            description = str(answer.get("error_description") or "") if answer else ""
            reason = " ".join(part for part in (str(status), oauth_error) if part)
            detail = f"POST {self._shown_url} answered {reason}"
            if description:
                detail += f" ({description})"
            hint = self._grant.rejection_hint(oauth_error)
            error = self._error(502, "token_request_failed", f"{detail}: {hint}")
            error.oauth_error = redact(oauth_error, self._grant.secrets()) or None
            raise error
        raise self._error(
            502, "token_endpoint_unavailable", f"POST {self._shown_url} answered {status}"
        )

    def _parse_token(self, answer: dict[str, object] | None, sent_at: float) -> Token:
        if answer is None:
            raise self._malformed("the answer is not a JSON object")
        access_token = answer.get("access_token")
        expires_in = answer.get("expires_in")
        refresh_token = answer.get("refresh_token")
        token_type = answer.get("token_type", "Bearer")
        if not isinstance(access_token, str) or not access_token:
            raise self._malformed("no access_token in the answer")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
            raise self._malformed("no numeric expires_in in the answer")
        if not 0 < expires_in < _MAX_EXPIRES_IN_SECONDS:
            raise self._malformed(f"expires_in is {expires_in}")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise self._malformed("token_type is not Bearer")
        if refresh_token is not None and not isinstance(refresh_token, str):
            raise self._malformed("refresh_token is neither a string nor null")
        margin = min(self._margin_seconds, expires_in / 2)
        return Token(
            access_token=access_token,
            refresh_token=refresh_token or None,
            expires_in_seconds=float(expires_in),
            obtained_at=sent_at,
            renew_at=sent_at + expires_in - margin,
        )

    def _malformed(self, why: str) -> TokenError:
        return self._error(
            502,
            "token_endpoint_unavailable",
            f"POST {self._shown_url} gave a malformed answer: {why}",
        )

    def _error(self, status: int, code: ErrorCode, detail: str) -> TokenError:
        # The endpoint's own words end up in detail: never let them echo a secret back,
        # however they encoded it.
        return TokenError(status, code, redact(detail, self._grant.secrets()))


async def read_bounded(content: aiohttp.StreamReader, limit_bytes: int) -> bytes:
    """The whole body, however it is split on the wire, but never more than LIMIT_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while size < limit_bytes:
        chunk = await content.read(limit_bytes - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _renew_at(_key: str, token: Token, _now: float) -> float:
    return token.renew_at


def _parse_json_object(body: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
