"""Criteo's answer on its way to the client.

A small body of known length is read whole and sent in one write (and a failure
there is still an honest 502 / 504); anything else is streamed chunk by chunk,
never held in memory, and a failure after the status line aborts the client's
connection: a broken transfer, never a clean short body.
"""

from __future__ import annotations

import json
import logging
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from .errors import describe, upstream_errors
from .headers import build_downstream_headers
from .request_body import STREAM_CHUNK_BYTES

log = logging.getLogger("criteo_proxy.forward")

BYTES_OUT: Final = web.RequestKey("BYTES_OUT", int)
ABORTED: Final = web.RequestKey("ABORTED", bool)  # upstream failed after the status was sent
# Bodies of known length up to this size are read whole and sent in one write.
SMALL_BODY_BYTES: Final = 64 * 1024


async def stream_back(
    request: web.Request, upstream: aiohttp.ClientResponse, request_id: str
) -> web.StreamResponse:
    """Criteo's answer to the client; the upstream response is released in the end."""
    try:
        headers = build_downstream_headers(upstream.headers, request_id=request_id)
        length = upstream.content_length
        if length is not None and length <= SMALL_BODY_BYTES:
            body = await _read_small_body(upstream, request_id)
            request[BYTES_OUT] = len(body)
            # One write for headers and body, instead of one per part.
            return web.Response(
                status=upstream.status, reason=upstream.reason, headers=headers, body=body
            )
        return await _stream(request, upstream, headers, request_id)
    finally:
        upstream.release()


async def _stream(
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


async def _read_small_body(upstream: aiohttp.ClientResponse, request_id: str) -> bytes:
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
