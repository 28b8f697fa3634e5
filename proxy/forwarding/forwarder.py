"""One request: build the upstream request, send it, apply the retry rules, stream back.

Knows nothing of YAML: it is handed a ``ForwardSettings`` built from the config.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from proxy.errors import ProxyError, UpstreamFailure, upstream_errors
from proxy.exchange import Exchange
from proxy.forwarding.downstream import Downstream
from proxy.forwarding.headers import build_upstream_headers
from proxy.forwarding.request_body import NO_BODY, RequestBody, body_timeout, body_too_large
from proxy.forwarding.retries import Failure, TransientPolicy, failure_reason, retry_delay
from proxy.forwarding.versions import ApiVersions
from proxy.observability.metrics import ProfileMetrics
from proxy.ratelimit.pacer import Pacer
from proxy.ratelimit.window import RateLimited, Send, Window
from proxy.tokens.provider import TokenProvider
from proxy.tokens.token import Token

log = logging.getLogger("criteo_proxy.forward")

_OAUTH_PREFIX: Final = "/oauth2/"


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardSettings:
    upstream_url: str  # no trailing slash
    retry_body_limit_bytes: int
    max_body_bytes: int | None
    response_timeout_seconds: float
    transient: TransientPolicy
    # from HTTPS_PROXY / HTTP_PROXY, NO_PROXY applied; may carry proxy credentials
    http_proxy: str | None = field(default=None, repr=False)


def build_upstream_url(upstream_url: str, path_and_query: str) -> URL:
    """Upstream base + the raw path and query, byte for byte (``//x`` stays a path)."""
    return URL(upstream_url + path_and_query, encoded=True)


def is_oauth_path(path_and_query: str) -> bool:
    """``/oauth2/...`` goes upstream as the client sent it, without the proxy's token."""
    path = path_and_query.split("?", 1)[0]
    return path == "/oauth2" or path.startswith(_OAUTH_PREFIX)


def _restarter(deadline: asyncio.Timeout, seconds: float) -> Callable[[], None]:
    """What moves DEADLINE SECONDS ahead, each time a body chunk has been handed over."""
    loop = asyncio.get_running_loop()
    return lambda: deadline.reschedule(loop.time() + seconds)


@dataclass(slots=True)
class TransientTries:
    """One request's transient retries so far."""

    retries: int = 0
    waited_seconds: float = 0.0


class Forwarder:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        tokens: TokenProvider,
        settings: ForwardSettings,
        metrics: ProfileMetrics,
        pacer: Pacer,
        versions: ApiVersions,
    ) -> None:
        self._session = session
        self._tokens = tokens
        self._settings = settings
        self._metrics = metrics
        self._pacer = pacer
        self._downstream = Downstream(versions)
        self._transient = settings.transient
        self._response_timeout_label = (
            f"upstream.response_timeout ({settings.response_timeout_seconds:g} s)"
        )

    async def handle(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        """Send, then the three rules, in one place: a 401 is replayed once with a new
        token (3.2), a 429 once after the reset (3.5), a transient failure up to
        retry.transient.attempts times (10). Each rule counts on its own: a request
        that met a 401 and then a 503 is retried once for each."""
        path_and_query = exchange.target
        settings = self._settings
        url = build_upstream_url(settings.upstream_url, path_and_query)
        body = (
            await RequestBody.read(
                request,
                retry_limit_bytes=settings.retry_body_limit_bytes,
                max_body_bytes=settings.max_body_bytes,
                idle_timeout_seconds=settings.response_timeout_seconds,
            )
            if request.body_exists
            else NO_BODY
        )
        # /oauth2/... goes as the client sent it: no token, so no 401 or 429 rule either.
        tokens = self._tokens
        token = (
            None
            if is_oauth_path(path_and_query)
            else tokens.cached_token() or await tokens.get_token()
        )
        replayed_401 = replayed_429 = False
        transient = TransientTries()
        while True:
            try:
                upstream = await self._send(request, url, body, token, exchange)
            except UpstreamFailure as exc:
                if exc.kind not in ("connect", "reset"):
                    raise
                kind: Failure = "connect" if exc.kind == "connect" else "reset"
                if not await self._wait_transient(kind, request, body, transient, exchange):
                    raise
                continue
            status = upstream.status
            if status == 401 and token is not None and not replayed_401:
                if self._may_replay_after_401(body, exchange):
                    upstream.release()
                    self._tokens.invalidate(token)
                    token = await self._tokens.get_token()
                    replayed_401 = True
                    continue
            elif status == 429 and token is not None and not replayed_429:
                if self._may_replay_after_429(url, body, upstream, exchange):
                    upstream.release()
                    replayed_429 = True
                    continue
            elif self._transient.may_retry_status(status) and await self._wait_transient(
                status, request, body, transient, exchange, upstream
            ):
                continue
            return await self._downstream.stream_back(request, upstream, exchange)

    def _may_replay_after_401(self, body: RequestBody, exchange: Exchange) -> bool:
        if not body.replayable:
            log.warning(
                "request %s: Criteo answered 401; not retried because the body was larger "
                "than retry.body_limit (%d bytes)",
                exchange.request_id,
                self._settings.retry_body_limit_bytes,
            )
            return False
        exchange.retried = "401"
        self._metrics.retries.inc()
        log.info(
            "request %s: Criteo answered 401, retrying once with a new token",
            exchange.request_id,
        )
        return True

    def _may_replay_after_429(
        self, url: URL, body: RequestBody, upstream: aiohttp.ClientResponse, exchange: Exchange
    ) -> bool:
        """A 429 means Criteo did not process the request: replay it once, after the reset."""
        self._count_429(url.raw_path, "seen")
        pacer = self._pacer
        wait = pacer.seconds_until_reset(upstream.headers)
        if not pacer.enabled:
            why_not = "pacing is off"
        elif not body.replayable:
            why_not = "the body is too large to replay"
        elif wait is None:
            why_not = "no reset in the answer"
        elif wait > pacer.max_wait_seconds:
            why_not = f"the window resets in {wait:.0f} s, beyond rate_limit.max_wait"
        else:
            why_not = ""
        if why_not:
            log.warning(
                "request %s: Criteo answered 429; passed on (%s)", exchange.request_id, why_not
            )
            return False
        exchange.retried = "429"
        self._count_429(url.raw_path, "retried")
        # The window now says remaining 0: the next send waits in line until the reset.
        log.info("request %s: Criteo answered 429; retrying after the reset", exchange.request_id)
        return True

    async def _wait_transient(
        self,
        failure: Failure,
        request: web.Request,
        body: RequestBody,
        transient: TransientTries,
        exchange: Exchange,
        upstream: aiohttp.ClientResponse | None = None,
    ) -> bool:
        """Wait before another try if the policy allows one (releasing UPSTREAM's answer)."""
        policy = self._transient
        delay = retry_delay(
            policy,
            failure,
            method=request.method,
            body_replayable=body.replayable if failure != "connect" else body.can_resend,
            retries_done=transient.retries,
            waited_seconds=transient.waited_seconds,
            retry_after=None if upstream is None else upstream.headers.get("Retry-After"),
            now=time.time(),
        )
        if delay is None:
            return False
        if upstream is not None:
            upstream.release()
        reason = failure_reason(failure)
        transient.retries += 1
        transient.waited_seconds += delay
        exchange.retried = "transient"
        self._metrics.count_transient_retry(reason)
        log.info(
            "request %s: transient failure (%s); try %d of %d in %.2f s",
            exchange.request_id,
            reason,
            transient.retries + 1,
            policy.attempts + 1,
            delay,
        )
        await asyncio.sleep(delay)
        return True

    def _count_429(self, path: str, outcome: str) -> None:
        """429s, seen from Criteo, retried after the reset, refused by us: metrics and console."""
        self._metrics.count_429(outcome)
        if self._pacer.enabled:
            self._pacer.window_for(path).throttled[outcome] += 1

    async def _send(
        self,
        request: web.Request,
        url: URL,
        body: RequestBody,
        token: Token | None,
        exchange: Exchange,
    ) -> aiohttp.ClientResponse:
        headers = build_upstream_headers(
            request.headers,
            token=None if token is None else token.access_token,
            request_id=exchange.request_id,
        )
        timeout_seconds = self._settings.response_timeout_seconds
        slot = await self._wait_for_slot(url.raw_path, exchange) if token else None
        started = time.perf_counter()
        answer: CIMultiDictProxy[str] | None = None
        try:
            with upstream_errors(url, self._response_timeout_label):
                # response_timeout counts from the last body chunk handed over: a large
                # upload takes as long as it needs while it moves, then Criteo has the
                # full time to answer; a stall at any point is bounded.
                async with asyncio.timeout(timeout_seconds) as deadline:
                    response = await self._session.request(
                        request.method,
                        url,
                        headers=headers,
                        data=body.payload(
                            # only a streamed body reports progress: no closure otherwise
                            None if body.replayable else _restarter(deadline, timeout_seconds)
                        ),
                        allow_redirects=False,  # a 3xx is the client's to follow
                        proxy=self._settings.http_proxy,
                    )
            answer = response.headers
        except ProxyError as exc:
            if body.too_large:
                raise body_too_large(self._settings.max_body_bytes or 0) from None
            if exc.code == "upstream_timeout" and body.waiting_for_client:
                raise body_timeout(timeout_seconds) from None
            raise
        finally:
            exchange.bytes_in = body.size
            if slot is not None:
                window, send = slot
                window.answered(answer, send)
        elapsed = time.perf_counter() - started
        self._metrics.upstream_latency.observe(elapsed)
        exchange.add_upstream_seconds(elapsed)
        return response

    async def _wait_for_slot(
        self, path: str, exchange: Exchange
    ) -> tuple[Window, Send | None] | None:
        """Wait in line for Criteo's rate-limit window; 429 rate_limited past max_wait."""
        pacer = self._pacer
        if not pacer.enabled:
            return None
        window = pacer.window_for(path)
        if not window.metered:  # Criteo does not limit it: no line to wait in, no await
            return window, None
        try:
            send = await window.take(pacer.max_wait_seconds)
        except RateLimited as exc:
            self._count_429(path, "refused")
            seconds = max(0.0, exc.reset_at - time.time())
            reset = time.strftime("%H:%M:%S UTC", time.gmtime(exc.reset_at))
            raise ProxyError(
                429,
                "rate_limited",
                f"Criteo's rate-limit window ({window.name}) frees a slot at {reset}, in "
                f"{seconds:.0f} s: more than rate_limit.max_wait ({pacer.max_wait_seconds:g} s)",
            ) from None
        waited = send.waited_seconds
        if waited:
            exchange.rate_limit_wait_seconds += waited
            self._metrics.rate_limit_wait.inc(waited)
            log.info(
                "request %s: waited %.2f s for Criteo's rate-limit window",
                exchange.request_id,
                waited,
            )
        return window, send
