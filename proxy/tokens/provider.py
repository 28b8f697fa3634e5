"""Access tokens: the TLRU cache, single flight and back-off, whatever the grant.

Knows the client side of aiohttp only; nothing here answers an HTTP request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

import aiohttp
from cachetools import TLRUCache

from proxy.coordination.outcomes import Unavailable
from proxy.tokens.endpoint import TokenEndpoint
from proxy.tokens.fleet import FleetTokens
from proxy.tokens.recent_errors import RecentErrors
from proxy.tokens.token import Clock, Grant, Token, TokenError, TokenState, TokenStatus

log = logging.getLogger("criteo_proxy.tokens")

_BACKOFF_FIRST_SECONDS: Final = 1.0
_BACKOFF_MAX_SECONDS: Final = 30.0


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
        fleet: FleetTokens | None = None,
    ) -> None:
        self._grant = grant
        self._fleet = fleet  # DESIGN 11: the token is the app's, shared on Redis
        self._endpoint = TokenEndpoint(
            session,
            grant,
            token_url=token_url,
            margin_seconds=margin_seconds,
            timeout_seconds=timeout_seconds,
            http_proxy=http_proxy,
            clock=clock,
        )
        self._clock = clock
        self._on_fetch = on_fetch  # told True / False after each token request, for metrics
        self._cache: TLRUCache[str, Token] = TLRUCache(maxsize=8, ttu=_renew_at, timer=clock)
        # The token last taken from the cache, for the hot path (see cached_token).
        self._current: Token | None = None
        self._inflight: asyncio.Task[Token | TokenError] | None = None
        self._last_error: TokenError | None = None
        self._recent_errors = RecentErrors()
        self._failures = 0
        self._retry_at = 0.0
        self.fetched_at: float | None = None  # epoch seconds of the last token obtained
        # An access token Criteo refused (401): dropped from the fleet, never taken from it.
        self._met_401: str | None = None

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
            recent_errors=self._recent_errors.newest_first(),
        )

    def cached_token(self) -> Token | None:
        # Every request asks, twice: a look at the token in hand is cheaper than the
        # cache's own expiry bookkeeping, and says the same (valid until renew_at).
        token = self._current
        if token is not None:
            now = self._clock()
            if now < token.renew_at or (now < token.expires_at and self._refreshes_late):
                return token
        token = self._current = self._cache.get(self._grant.cache_key)
        return token

    @property
    def _refreshes_late(self) -> bool:
        """A fleet member alone, spending a rotating refresh token, does so only once its
        access token has expired: the less it rotates alone, the less can diverge."""
        fleet = self._fleet
        return fleet is not None and not fleet.active and self._grant.rotates

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
        self._met_401 = token.access_token
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

    async def _obtain(self) -> Token:
        """From the fleet when it answers (another member's token, or ours for all of
        them), else alone."""
        fleet = self._fleet
        if fleet is not None and fleet.active:
            try:
                return await fleet.obtain(self._obtain_alone, stale=self._met_401)
            except Unavailable:
                pass  # said once by the link; this fetch goes alone
        return await self._obtain_alone()

    async def _obtain_alone(self) -> Token:
        return await self._grant.obtain(self._endpoint.request)

    async def _fetch(self) -> Token | TokenError:
        try:
            token = await self._obtain()
        except TokenError as exc:
            self._failures += 1
            delay = min(_BACKOFF_FIRST_SECONDS * 2 ** (self._failures - 1), _BACKOFF_MAX_SECONDS)
            self._retry_at = self._clock() + delay
            self._last_error = exc
            self._recent_errors.note(exc.detail)
            if self._on_fetch is not None:
                self._on_fetch(False)
            log.warning("token request failed (next attempt in %.0f s): %s", delay, exc.detail)
            return exc
        self._failures = 0
        self._last_error = None
        self._met_401 = None
        self.fetched_at = time.time()
        self._cache[self._grant.cache_key] = token
        if self._on_fetch is not None:
            self._on_fetch(True)
        log.info("token fetched, valid for %.0f s", token.expires_in_seconds)
        return token


def _renew_at(_key: str, token: Token, _now: float) -> float:
    return token.renew_at
