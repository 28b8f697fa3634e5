"""One request: build the upstream request, stream it, retry once on 401.

Knows nothing of YAML: it is handed a ``ForwardSettings`` built from the config.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .errors import ProxyError, describe
from .observability import Metrics
from .pacing import Pacer, RateLimited, Window
from .tokens import Token, TokenProvider

log = logging.getLogger("criteo_proxy.forward")

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never forwarded upstream: ours to answer (Expect), ours to set (Host,
# Authorization), or the inbound key that must not leave the machine.
_REQUEST_ONLY: Final = frozenset(
    {"host", "authorization", "expect", "x-proxy-key", "http2-settings"}
)
# The sets a request's headers are filtered with, made once rather than per request.
_DROPPED_UPSTREAM: Final = HOP_BY_HOP | _REQUEST_ONLY
_DROPPED_UPSTREAM_OAUTH: Final = _DROPPED_UPSTREAM - {"authorization"}
REQUEST_ID_HEADER: Final = "X-Request-Id"
STREAM_CHUNK_BYTES: Final = 1024 * 1024
RETRIED: Final = web.RequestKey("RETRIED", bool)  # the request was replayed after a 401
UPSTREAM_SECONDS: Final = web.RequestKey("UPSTREAM_SECONDS", float)  # until response headers
BYTES_IN: Final = web.RequestKey("BYTES_IN", int)
ABORTED: Final = web.RequestKey("ABORTED", bool)  # upstream failed after the status was sent
BYTES_OUT: Final = web.RequestKey("BYTES_OUT", int)
_API_VERSION: Final = re.compile(r"\d{4}-\d{2}|preview|legacy|experimental")
# Bodies of known length up to this size are read whole and sent in one write.
SMALL_BODY_BYTES: Final = 64 * 1024
_OAUTH_PREFIX: Final = "/oauth2/"


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardSettings:
    upstream_url: str  # no trailing slash
    retry_body_limit_bytes: int
    max_body_bytes: int | None
    response_timeout_seconds: float
    # from HTTPS_PROXY / HTTP_PROXY, NO_PROXY applied; may carry proxy credentials
    http_proxy: str | None = field(default=None, repr=False)


def build_upstream_url(upstream_url: str, path_and_query: str) -> URL:
    """Upstream base + the raw path and query, byte for byte (``//x`` stays a path)."""
    return URL(upstream_url + path_and_query, encoded=True)


def connection_listed(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    """Header names that a ``Connection`` header declares hop-by-hop."""
    return {
        name.strip().lower()
        for value in headers.getall("Connection", ())
        for name in value.split(",")
        if name.strip()
    }


def build_upstream_headers(
    incoming: CIMultiDictProxy[str] | CIMultiDict[str], *, token: str | None, request_id: str
) -> CIMultiDict[str]:
    """The client's headers as Criteo should see them.

    With a token, the client's own Authorization is replaced by it; without
    (``/oauth2/...``), the client's Authorization passes untouched.
    """
    dropped = _DROPPED_UPSTREAM if token is not None else _DROPPED_UPSTREAM_OAUTH
    listed = connection_listed(incoming)
    if listed:
        dropped = dropped | (listed - {"authorization"})
    headers = CIMultiDict((k, v) for k, v in incoming.items() if k.lower() not in dropped)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers[REQUEST_ID_HEADER] = request_id
    return headers


def build_downstream_headers(
    upstream: CIMultiDictProxy[str], *, request_id: str
) -> CIMultiDict[str]:
    """Criteo's response headers as the client should see them."""
    listed = connection_listed(upstream)
    dropped = HOP_BY_HOP | listed if listed else HOP_BY_HOP
    headers = CIMultiDict((k, v) for k, v in upstream.items() if k.lower() not in dropped)
    headers[REQUEST_ID_HEADER] = request_id
    return headers


def is_oauth_path(path_and_query: str) -> bool:
    """``/oauth2/...`` goes upstream as the client sent it, without the proxy's token."""
    path = path_and_query.split("?", 1)[0]
    return path == "/oauth2" or path.startswith(_OAUTH_PREFIX)


class RequestBody:
    """The client's body: buffered when small enough to replay, streamed otherwise."""

    def __init__(
        self,
        content: aiohttp.StreamReader | None,
        prefix: list[bytes],
        *,
        complete: bool,
        max_body_bytes: int | None,
    ) -> None:
        self._content = content
        self._prefix = prefix
        self.replayable = complete
        self._max_body_bytes = max_body_bytes
        self.too_large = False
        self.waiting_for_client = False  # True while a streamed read from the client pends
        self._consumed = False
        self.size = sum(len(chunk) for chunk in prefix)  # bytes received from the client so far

    @classmethod
    async def read(
        cls,
        request: web.Request,
        *,
        retry_limit_bytes: int,
        max_body_bytes: int | None,
        idle_timeout_seconds: float,
    ) -> RequestBody:
        """Buffer up to RETRY_LIMIT_BYTES; the client may pause IDLE_TIMEOUT_SECONDS at most."""
        if not request.body_exists:
            return cls(None, [], complete=True, max_body_bytes=max_body_bytes)
        declared = request.content_length
        if max_body_bytes is not None and declared is not None and declared > max_body_bytes:
            raise _body_too_large(max_body_bytes)
        await send_continue_if_expected(request)
        if declared is not None and declared > retry_limit_bytes:
            return cls(request.content, [], complete=False, max_body_bytes=max_body_bytes)
        chunks: list[bytes] = []
        size = 0
        while size <= retry_limit_bytes:
            try:
                async with asyncio.timeout(idle_timeout_seconds):
                    chunk = await request.content.readany()
            except TimeoutError:
                raise body_timeout(idle_timeout_seconds) from None
            if not chunk:
                return cls(None, chunks, complete=True, max_body_bytes=max_body_bytes)
            chunks.append(chunk)
            size += len(chunk)
            if max_body_bytes is not None and size > max_body_bytes:
                raise _body_too_large(max_body_bytes)
        return cls(request.content, chunks, complete=False, max_body_bytes=max_body_bytes)

    def payload(self, on_progress: Callable[[], None]) -> bytes | AsyncIterator[bytes] | None:
        """What to send upstream; ON_PROGRESS is called per chunk handed over, and at the end."""
        if self.replayable:
            # None, not b"": aiohttp would add "Content-Length: 0" to a bodiless GET.
            return b"".join(self._prefix) if self._prefix else None
        if self._consumed:
            raise RuntimeError("a streamed body can be sent only once")
        self._consumed = True
        return self._stream(on_progress)

    async def _stream(self, on_progress: Callable[[], None]) -> AsyncIterator[bytes]:
        for chunk in self._prefix:
            yield chunk
        self._prefix = []
        if self._content is not None:
            while True:
                # A stall here (the client's) and one upstream look alike to the
                # deadline that cuts them; this flag tells them apart.
                self.waiting_for_client = True
                chunk = await self._content.read(STREAM_CHUNK_BYTES)
                self.waiting_for_client = False
                if not chunk:
                    break
                self.size += len(chunk)
                if self._max_body_bytes is not None and self.size > self._max_body_bytes:
                    self.too_large = True
                    raise _body_too_large(self._max_body_bytes)
                on_progress()
                yield chunk
        on_progress()


async def send_continue_if_expected(request: web.Request) -> None:
    """Answer ``Expect`` now that the request has been admitted: 100 Continue, or 417."""
    expect = request.headers.get("Expect")
    if expect is None or request.version < aiohttp.HttpVersion11:
        return
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect[:100]}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0


def body_timeout(idle_seconds: float) -> ProxyError:
    return ProxyError(
        408,
        "body_timeout",
        f"the request body stalled: nothing came for upstream.response_timeout "
        f"({idle_seconds:g} s)",
    )


def _body_too_large(limit: int) -> ProxyError:
    return ProxyError(
        413,
        "body_too_large",
        f"the request body is larger than limits.max_body_bytes ({limit} bytes)",
    )


@contextmanager
def upstream_errors(url: URL, timeout: str) -> Iterator[None]:
    """Turn the upstream leg's failures into the proxy's 502 / 504 (before any byte is sent).

    TIMEOUT names the limit that applies, e.g. ``upstream.response_timeout (120 s)``.
    """
    try:
        yield
    except TimeoutError as exc:
        raise ProxyError(
            504, "upstream_timeout", f"{url.host} did not answer within {timeout}"
        ) from exc
    except aiohttp.ClientError as exc:
        raise ProxyError(502, "upstream_unavailable", f"{url.host}: {describe(exc)}") from exc


class Forwarder:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        tokens: TokenProvider,
        settings: ForwardSettings,
        metrics: Metrics,
        pacer: Pacer,
    ) -> None:
        self._session = session
        self._tokens = tokens
        self._settings = settings
        self._metrics = metrics
        self._pacer = pacer
        self._deprecated_versions_seen: set[str] = set()
        self._response_timeout_label = (
            f"upstream.response_timeout ({settings.response_timeout_seconds:g} s)"
        )

    async def handle(
        self, request: web.Request, path_and_query: str, request_id: str
    ) -> web.StreamResponse:
        settings = self._settings
        url = build_upstream_url(settings.upstream_url, path_and_query)
        body = await RequestBody.read(
            request,
            retry_limit_bytes=settings.retry_body_limit_bytes,
            max_body_bytes=settings.max_body_bytes,
            idle_timeout_seconds=settings.response_timeout_seconds,
        )
        if is_oauth_path(path_and_query):
            upstream = await self._send(request, url, body, None, request_id)
            return await self._stream_back(request, upstream, path_and_query, request_id)

        token = await self._tokens.get_token()
        upstream = await self._send(request, url, body, token, request_id)
        if upstream.status == 401:
            if body.replayable:
                upstream.release()
                self._tokens.invalidate(token)
                token = await self._tokens.get_token()
                request[RETRIED] = True
                self._metrics.retries.inc()
                log.info(
                    "request %s: Criteo answered 401, retrying once with a new token", request_id
                )
                upstream = await self._send(request, url, body, token, request_id)
            else:
                log.warning(
                    "request %s: Criteo answered 401; not retried because the body was larger "
                    "than retry.body_limit (%d bytes)",
                    request_id,
                    settings.retry_body_limit_bytes,
                )
        if upstream.status == 429:
            upstream = await self._retry_after_reset(
                request, url, body, token, upstream, request_id
            )
        return await self._stream_back(request, upstream, path_and_query, request_id)

    async def _retry_after_reset(
        self,
        request: web.Request,
        url: URL,
        body: RequestBody,
        token: Token,
        upstream: aiohttp.ClientResponse,
        request_id: str,
    ) -> aiohttp.ClientResponse:
        """A 429 means Criteo did not process the request: replay it once, after the reset."""
        self._metrics.rate_limited.labels("seen").inc()
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
            log.warning("request %s: Criteo answered 429; passed on (%s)", request_id, why_not)
            return upstream
        upstream.release()
        self._metrics.rate_limited.labels("retried").inc()
        log.info("request %s: Criteo answered 429; retrying after the reset", request_id)
        # The window now says remaining 0: _send waits in line until the reset.
        return await self._send(request, url, body, token, request_id)

    async def _send(
        self,
        request: web.Request,
        url: URL,
        body: RequestBody,
        token: Token | None,
        request_id: str,
    ) -> aiohttp.ClientResponse:
        headers = build_upstream_headers(
            request.headers,
            token=None if token is None else token.access_token,
            request_id=request_id,
        )
        timeout_seconds = self._settings.response_timeout_seconds
        window = await self._wait_for_slot(url.raw_path, request_id) if token else None
        started = time.perf_counter()
        answer: CIMultiDictProxy[str] | None = None
        try:
            with upstream_errors(url, self._response_timeout_label):
                # response_timeout counts from the last body chunk handed over: a large
                # upload takes as long as it needs while it moves, then Criteo has the
                # full time to answer; a stall at any point is bounded.
                loop = asyncio.get_running_loop()
                async with asyncio.timeout(timeout_seconds) as deadline:

                    def restart_deadline() -> None:
                        deadline.reschedule(loop.time() + timeout_seconds)

                    response = await self._session.request(
                        request.method,
                        url,
                        headers=headers,
                        data=body.payload(on_progress=restart_deadline),
                        allow_redirects=False,  # a 3xx is the client's to follow
                        proxy=self._settings.http_proxy,
                    )
            answer = response.headers
        except ProxyError as exc:
            if body.too_large:
                raise _body_too_large(self._settings.max_body_bytes or 0) from None
            if exc.code == "upstream_timeout" and body.waiting_for_client:
                raise body_timeout(timeout_seconds) from None
            raise
        finally:
            request[BYTES_IN] = body.size
            if window is not None:
                window.answered(answer)
        elapsed = time.perf_counter() - started
        self._metrics.upstream_latency.observe(elapsed)
        request[UPSTREAM_SECONDS] = request.get(UPSTREAM_SECONDS, 0.0) + elapsed
        return response

    async def _wait_for_slot(self, path: str, request_id: str) -> Window | None:
        """Wait in line for Criteo's rate-limit window; 429 rate_limited past max_wait."""
        pacer = self._pacer
        if not pacer.enabled:
            return None
        window = pacer.window_for(path)
        try:
            waited = await window.acquire(pacer.max_wait_seconds)
        except RateLimited as exc:
            self._metrics.rate_limited.labels("refused").inc()
            seconds = max(0.0, exc.reset_at - time.time())
            reset = time.strftime("%H:%M:%S UTC", time.gmtime(exc.reset_at))
            raise ProxyError(
                429,
                "rate_limited",
                f"Criteo's rate-limit window ({window.name}) frees a slot at {reset}, in "
                f"{seconds:.0f} s: more than rate_limit.max_wait ({pacer.max_wait_seconds:g} s)",
            ) from None
        if waited:
            self._metrics.rate_limit_wait.inc(waited)
            log.info("request %s: waited %.2f s for Criteo's rate-limit window", request_id, waited)
        return window

    async def _stream_back(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        path_and_query: str,
        request_id: str,
    ) -> web.StreamResponse:
        try:
            self._note_deprecation(upstream.headers, path_and_query)
            headers = build_downstream_headers(upstream.headers, request_id=request_id)
            length = upstream.content_length
            if length is not None and length <= SMALL_BODY_BYTES:
                body = await self._read_small_body(upstream, request_id)
                request[BYTES_OUT] = len(body)
                # One write for headers and body, instead of one per part.
                return web.Response(
                    status=upstream.status, reason=upstream.reason, headers=headers, body=body
                )
            return await self._stream(request, upstream, headers, request_id)
        finally:
            upstream.release()

    async def _stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        request_id: str,
    ) -> web.StreamResponse:
        """Copy a large or open-ended body chunk by chunk: never all of it in memory."""
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        response.headers.extend(headers)
        await response.prepare(request)
        sent = 0
        while True:
            try:
                chunk = await upstream.content.read(STREAM_CHUNK_BYTES)
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The status line is gone: the only honest signal left is a broken
                # transfer, never a clean short body.
                log.warning(
                    "request %s: upstream failed mid-body (%s); aborting the client connection",
                    request_id,
                    describe(exc),
                )
                abort_client(request)
                request[ABORTED] = True
                return response
            if not chunk:
                break
            try:
                await response.write(chunk)
            except ConnectionError:
                log.info("request %s: client went away mid-download", request_id)
                return response
            finally:
                sent += len(chunk)
                request[BYTES_OUT] = sent
        await response.write_eof()
        return response

    async def _read_small_body(self, upstream: aiohttp.ClientResponse, request_id: str) -> bytes:
        """A body of known, small length, read whole before answering.

        A failure here comes before any byte went to the client, so it is still
        an honest 502 / 504. Criteo's trace id in an error envelope is logged.
        """
        with upstream_errors(upstream.url, "upstream.read_timeout"):
            body = await upstream.read()
        if upstream.status >= 400 and "json" in upstream.headers.get("Content-Type", ""):
            trace_ids = find_trace_ids(body)
            if trace_ids:
                log.info(
                    "request %s: Criteo answered %d (Criteo traceId %s)",
                    request_id,
                    upstream.status,
                    ", ".join(trace_ids),
                )
        return body

    def _note_deprecation(self, headers: CIMultiDictProxy[str], path_and_query: str) -> None:
        """Deprecation / Sunset: counted every time, logged once per API version."""
        if "Deprecation" not in headers and "Sunset" not in headers:
            return
        version = path_and_query.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        if not _API_VERSION.fullmatch(version):
            version = "other"  # bounded labels, whatever the paths
        self._metrics.deprecations.labels(version).inc()
        if version in self._deprecated_versions_seen:
            return
        self._deprecated_versions_seen.add(version)
        sunset = headers.get("Sunset")
        log.warning(
            "Criteo API version %s is deprecated%s: update the tools that call /%s/... "
            "before Criteo answers 410",
            version,
            f" (sunset {sunset})" if sunset else "",
            version,
        )


def find_trace_ids(body: bytes) -> list[str]:
    """traceId / traceIdentifier values of a Criteo error envelope, if it is one."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return []
    errors = envelope.get("errors") if isinstance(envelope, dict) else None
    if not isinstance(errors, list):
        return []
    found: list[str] = []
    for error in errors:
        if isinstance(error, dict):
            for key in ("traceId", "traceIdentifier"):
                value = error.get(key)
                if isinstance(value, str) and value not in found:
                    found.append(value[:128])
    return found


def abort_client(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
