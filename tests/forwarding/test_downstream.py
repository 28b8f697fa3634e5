"""Criteo's answer on its way back: the same bytes, HEAD and 204, streamed, cut mid-body."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import StartProxy, raw_request
from tests.forwarding.conftest import (
    TIMEOUT,
    assert_proxy_token,
    proxy_port,
    raw_connection,
    read_answer,
    request_bytes,
    send,
)

# --- helpers --------------------------------------------------------------------------


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers only (for HEAD, 100 Continue)."""
    async with asyncio.timeout(TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers


async def read_until_eof(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        return await reader.read()


# --- compressed bodies ----------------------------------------------------------------


async def test_gzip_response_passes_through_as_the_same_bytes(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    compressed = gzip.compress(b'{"data":[' + b'{"id":"1"},' * 2000 + b'{"id":"2"}]}', mtime=0)

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(
            body=compressed,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    criteo.handlers["/2026-07/report"] = gzipped
    port = proxy_port(proxy)
    answer = await raw_request(
        port, request_bytes("GET", "/2026-07/report", port, {"Accept-Encoding": "gzip"})
    )
    assert answer.status == 200
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.body == compressed
    assert criteo.last_request.headers["Accept-Encoding"] == "gzip"

    async with aiohttp.ClientSession(auto_decompress=False) as session:
        url = proxy.make_url("/2026-07/report")
        async with session.get(url, headers={"Accept-Encoding": "gzip, deflate"}) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert await resp.read() == compressed
    assert criteo.last_request.headers["Accept-Encoding"] == "gzip, deflate"


# --- HEAD, 204 ------------------------------------------------------------------------


async def test_head_passes_content_length_without_a_body(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 1234, content_type="text/plain")

    criteo.handlers["/2026-07/sized"] = sized
    port = proxy_port(proxy)
    async with raw_connection(port) as (reader, writer):
        await send(writer, request_bytes("HEAD", "/2026-07/sized", port))
        status, headers = await read_head(reader)
        assert status == 200
        assert headers["content-length"] == "1234"
        # No body bytes follow: the next answer on this connection parses cleanly.
        await send(writer, request_bytes("GET", "/2026-07/sized", port))
        second = await read_answer(reader)
    assert second.status == 200
    assert second.body == b"x" * 1234
    assert [r.method for r in criteo.requests] == ["HEAD", "GET"]


async def test_204_passes_through_without_a_body(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    async def no_content(request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"X-Deleted": "yes"})

    criteo.handlers["/2026-07/thing"] = no_content
    port = proxy_port(proxy)
    async with raw_connection(port) as (reader, writer):
        await send(writer, request_bytes("DELETE", "/2026-07/thing", port))
        first = await read_answer(reader)
        await send(writer, request_bytes("GET", "/2026-07/advertisers/me", port))
        second = await read_answer(reader)
    assert first.status == 204
    assert first.body == b""
    assert first.headers["x-deleted"] == "yes"
    assert second.status == 200  # no stray body bytes were left on the connection
    assert [r.method for r in criteo.requests] == ["DELETE", "GET"]


# --- large streamed response ----------------------------------------------------------

MIB = 1024 * 1024
BIG_CHUNKS = 100
BIG_BASE = os.urandom(MIB)


def big_chunk(index: int) -> bytes:
    return index.to_bytes(4, "big") + BIG_BASE[4:]


async def test_large_response_streams_intact_without_being_held_in_memory(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    """100 MiB through the proxy; peak traced Python memory of the whole process stays small.

    Fake, proxy and client share this process, so tracemalloc's peak bounds what the
    proxy held at once: buffering the response would put it at >= 100 MiB.
    """

    async def report(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = BIG_CHUNKS * MIB
        await response.prepare(request)
        for index in range(BIG_CHUNKS):
            await response.write(big_chunk(index))
        await response.write_eof()
        return response

    criteo.handlers["/2026-07/big-report"] = report
    expected = hashlib.sha256()
    for index in range(BIG_CHUNKS):
        expected.update(big_chunk(index))

    received = 0
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        async with proxy.get("/2026-07/big-report") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(BIG_CHUNKS * MIB)
            async for chunk in resp.content.iter_chunked(256 * 1024):
                received += len(chunk)
                digest.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == BIG_CHUNKS * MIB
    assert digest.hexdigest() == expected.hexdigest()
    assert peak < 32 * MIB, f"peak traced memory {peak / MIB:.1f} MiB"
    assert_proxy_token(criteo)


# --- upstream failure after the status line -------------------------------------------


def aborting_handler(
    *, chunked: bool, length: int = 1_000_000
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = length
        await response.prepare(request)
        await response.write(b"p" * 1000)
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError  # the connection is gone; nothing more to send

    return handler


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_upstream_dying_mid_body_breaks_the_client_transfer(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, chunked: bool
) -> None:
    criteo.handlers["/2026-07/dies"] = aborting_handler(chunked=chunked)
    resp = await proxy.get("/2026-07/dies")
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        async with asyncio.timeout(TIMEOUT):
            await resp.read()
    assert criteo.last_request.raw_path == "/2026-07/dies"


async def test_small_body_cut_short_upstream_is_a_502_before_anything_is_sent(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    """Small known-length bodies are read whole first, so their failure is still a clean 502."""
    criteo.handlers["/2026-07/dies-small"] = aborting_handler(chunked=False, length=5000)
    resp = await proxy.get("/2026-07/dies-small")
    assert resp.status == 502
    assert resp.headers["X-Criteo-Proxy-Error"] == "upstream_unavailable"
    (error,) = (await resp.json())["errors"]
    assert error["traceId"] == resp.headers["X-Request-Id"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_upstream_dying_mid_body_is_never_a_clean_short_body_on_the_wire(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, chunked: bool
) -> None:
    criteo.handlers["/2026-07/dies"] = aborting_handler(chunked=chunked)
    port = proxy_port(proxy)
    async with raw_connection(port) as (reader, writer):
        await send(writer, request_bytes("GET", "/2026-07/dies", port))
        status, headers = await read_head(reader)
        rest = await read_until_eof(reader)  # the proxy closes the connection
    assert status == 200
    if chunked:
        assert headers.get("transfer-encoding") == "chunked"
        assert not rest.endswith(b"0\r\n\r\n")
    else:
        assert headers["content-length"] == "1000000"
        assert len(rest) < 1_000_000


async def test_upstream_stalling_mid_body_breaks_the_client_transfer_after_read_timeout(
    start_proxy: StartProxy, criteo: FakeCriteo, stalling: asyncio.Event
) -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"first chunk")
        await stalling.wait()
        return response

    criteo.handlers["/2026-07/stalls"] = stalls
    proxy = await start_proxy(upstream={"read_timeout": 0.3})
    resp = await proxy.get("/2026-07/stalls")
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        async with asyncio.timeout(TIMEOUT):
            await resp.read()
