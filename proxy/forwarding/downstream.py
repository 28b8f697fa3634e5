"""Criteo's answer on its way to the client.

A small body of known length (SMALL_BODY_BYTES) is read whole and sent in one
write (and a failure there is still an honest 502 / 504); anything else is streamed chunk by chunk,
never held in memory, and a failure after the status line aborts the client's
connection: a broken transfer, never a clean short body. A JSON error answer
(4xx / 5xx) of at most 8 KiB is also noted in the exchange, with Criteo's
trace id, for the log and the console; compressed ones are inflated for that
(never for the client). Any JSON answer is watched as it passes for a deprecation
warning in Criteo's envelope (its first and last bytes only), for the versions seen.
"""

from __future__ import annotations

import logging
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from proxy.errors import describe, upstream_errors
from proxy.exchange import Exchange
from proxy.forwarding.envelope import WarningWatch, find_trace_ids, inflate_bounded
from proxy.forwarding.headers import add_cors_headers, build_downstream_headers, is_writable
from proxy.forwarding.request_body import SMALL_BODY_BYTES, STREAM_CHUNK_BYTES
from proxy.forwarding.versions import ApiVersions

log = logging.getLogger("criteo_proxy.forward")

_MAX_LOGGED_NAMES: Final = 64


class Downstream:
    """Criteo's answers on their way back to one profile's clients."""

    def __init__(self, versions: ApiVersions) -> None:
        self._versions = versions
        # Names of headers dropped as unwritable, each logged once (bounded: any names).
        self._unwritable_logged: set[str] = set()

    async def stream_back(
        self, request: web.Request, upstream: aiohttp.ClientResponse, exchange: Exchange
    ) -> web.StreamResponse:
        """Criteo's answer to the client; the upstream response is released in the end."""
        target = exchange.target
        announced = self._versions.note(upstream.status, upstream.headers, target)
        # Headers that said it already: no need to look for it in the body.
        watch = None if announced or not is_json(upstream) else _watch_for(upstream)
        try:
            headers, unwritable = build_downstream_headers(
                upstream.headers, request_id=exchange.request_id
            )
            if unwritable:
                self._log_unwritable(unwritable)
            # A phrase the proxy could not write gives way to the standard one.
            reason = upstream.reason if is_writable(upstream.reason or "") else None
            length = upstream.content_length
            if length is not None and length <= SMALL_BODY_BYTES:
                with upstream_errors(upstream.url, "upstream.read_timeout"):
                    body = await upstream.read()
                exchange.bytes_out = len(body)
                if watch is not None:
                    watch.feed(body)
                if is_json_error(upstream):
                    note_error_body(upstream, body, exchange)
                # One write for headers and body, instead of one per part.
                return web.Response(
                    status=upstream.status, reason=reason, headers=headers, body=body
                )
            return await _stream(request, upstream, headers, reason, exchange, watch)
        finally:
            upstream.release()
            if watch is not None:
                self._versions.note_warnings(target, watch.deprecations())

    def _log_unwritable(self, names: list[str]) -> None:
        logged = self._unwritable_logged
        for name in names:
            if name.lower() in logged or len(logged) >= _MAX_LOGGED_NAMES:
                continue
            logged.add(name.lower())
            # The name only: the value is the upstream's, and unfit to print.
            log.warning(
                "Criteo's answer carried a %s header that no HTTP/1.1 answer may hold "
                "(a control character, or bytes that are not UTF-8): dropped, on this and "
                "every later answer",
                name if is_writable(name) else "(unprintable)",
            )


async def _stream(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
    reason: str | None,
    exchange: Exchange,
    watch: WarningWatch | None,
) -> web.StreamResponse:
    """Copy a large or open-ended body chunk by chunk: never all of it in memory."""
    response = web.StreamResponse(status=upstream.status, reason=reason)
    response.headers.extend(headers)
    if exchange.cors_origin is not None:  # set after the handler would be too late here
        add_cors_headers(exchange.cors_origin, response.headers)
    await response.prepare(request)
    # The start of a JSON error answer, kept while it is small enough to note.
    error_head: list[bytes] | None = [] if is_json_error(upstream) else None
    sent = 0
    while True:
        try:
            chunk = await upstream.content.read(STREAM_CHUNK_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The status line is gone: the only honest signal left is a broken
            # transfer, never a clean short body.
            log.warning(
                "request %s: upstream failed mid-body (%s); aborting the client connection",
                exchange.request_id,
                describe(exc),
            )
            abort_client(request)
            exchange.aborted = True
            return response
        if not chunk:
            break
        if watch is not None:
            watch.feed(chunk)
        if error_head is not None:
            error_head.append(chunk)
            if sent + len(chunk) > SMALL_BODY_BYTES:
                error_head = None
        try:
            await response.write(chunk)
        except ConnectionError:
            log.info("request %s: client went away mid-download", exchange.request_id)
            return response
        finally:
            sent += len(chunk)
            exchange.bytes_out = sent
    await response.write_eof()
    if error_head is not None:
        note_error_body(upstream, b"".join(error_head), exchange)
    return response


def is_json(upstream: aiohttp.ClientResponse) -> bool:
    return "json" in upstream.headers.get("Content-Type", "").lower()


def is_json_error(upstream: aiohttp.ClientResponse) -> bool:
    return upstream.status >= 400 and is_json(upstream)


def _watch_for(upstream: aiohttp.ClientResponse) -> WarningWatch:
    return WarningWatch(upstream.headers.get("Content-Encoding", "identity"))


def note_error_body(upstream: aiohttp.ClientResponse, body: bytes, exchange: Exchange) -> None:
    """Criteo's error envelope: its trace id logged, the body kept for the console."""
    readable = inflate_bounded(body, upstream.headers.get("Content-Encoding", "identity"))
    if readable is None:
        return
    exchange.error_body = readable
    trace_ids = find_trace_ids(readable)
    if trace_ids:
        exchange.criteo_trace_id = trace_ids[0]
        log.info(
            "request %s: Criteo answered %d (Criteo traceId %s)",
            exchange.request_id,
            upstream.status,
            ", ".join(trace_ids),
        )


def abort_client(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
