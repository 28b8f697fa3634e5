"""The client's request body: byte for byte, Expect: 100-continue, max_body_bytes, stalls."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import zlib
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import StartProxy, raw_request
from tests.forwarding.conftest import (
    TIMEOUT,
    assert_proxy_error,
    assert_proxy_token,
    proxy_port,
    raw_connection,
    read_answer,
    request_bytes,
    send,
)

# --- bodies ---------------------------------------------------------------------------

BINARY = bytes(range(256)) * 8 + b"\x00\x00\r\n\r\n0\r\n\x00end"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_binary_body_reaches_upstream_byte_for_byte(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, method: str
) -> None:
    resp = await proxy.request(
        method,
        "/2026-07/echo/body",
        data=BINARY,
        headers={"Content-Type": "application/vnd.test+octet-stream; x=1"},
    )
    assert resp.status == 200
    echo = await resp.json()
    assert echo["method"] == method
    assert echo["bodyLength"] == len(BINARY)
    assert echo["bodySha256"] == hashlib.sha256(BINARY).hexdigest()
    seen = criteo.last_request
    assert seen.method == method
    assert seen.body == BINARY
    assert seen.headers["Content-Length"] == str(len(BINARY))
    assert seen.headers["Content-Type"] == "application/vnd.test+octet-stream; x=1"
    assert_proxy_token(criteo)


async def test_chunked_request_body_arrives_whole(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    port = proxy_port(proxy)
    chunked = b"5\r\nab\x00cd\r\n3\r\nxyz\r\n1\r\n\x00\r\n0\r\n\r\n"
    answer = await raw_request(
        port,
        request_bytes(
            "POST",
            "/2026-07/echo/chunked",
            port,
            {"Transfer-Encoding": "chunked", "Content-Type": "application/octet-stream"},
            chunked,
        ),
    )
    assert answer.status == 200
    assert json.loads(answer.body)["bodyLength"] == 9
    assert criteo.last_request.body == b"ab\x00cdxyz\x00"
    assert "Transfer-Encoding" not in criteo.last_request.headers or (
        criteo.last_request.headers["Transfer-Encoding"] == "chunked"
    )


async def test_body_larger_than_the_retry_buffer_is_streamed_intact(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(retry={"body_limit": 1024})
    body = os.urandom(300 * 1024)
    resp = await proxy.post("/2026-07/echo/big", data=body)
    assert resp.status == 200
    assert (await resp.json())["bodySha256"] == hashlib.sha256(body).hexdigest()
    assert criteo.last_request.body == body
    assert_proxy_token(criteo)


def compress(encoding: str, data: bytes) -> bytes:
    return gzip.compress(data) if encoding == "gzip" else zlib.compress(data)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_body_reaches_upstream_as_the_clients_bytes(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, encoding: str
) -> None:
    """Never inflated on the way: Criteo gets the client's bytes under the client's headers."""
    body = compress(encoding, b'{"report": "x"}' * 500)
    resp = await proxy.post(
        "/2026-07/echo/compressed",
        data=body,
        headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
    )
    assert resp.status == 200
    echo = await resp.json()
    assert echo["bodySha256"] == hashlib.sha256(body).hexdigest()
    seen = criteo.last_request
    assert seen.body == body
    assert seen.headers["Content-Encoding"] == encoding
    assert seen.headers["Content-Length"] == str(len(body))


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_chunked_body_reaches_upstream_as_the_clients_bytes(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, encoding: str
) -> None:
    body = compress(encoding, os.urandom(2000) * 4)
    port = proxy_port(proxy)
    half = len(body) // 2
    chunked = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:half], body[half:])
    )
    answer = await raw_request(
        port,
        request_bytes(
            "POST",
            "/2026-07/echo/compressed",
            port,
            {"Transfer-Encoding": "chunked", "Content-Encoding": encoding},
            chunked + b"0\r\n\r\n",
        ),
    )
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["bodySha256"] == hashlib.sha256(body).hexdigest()
    assert criteo.last_request.body == body
    assert criteo.last_request.headers["Content-Encoding"] == encoding


async def test_max_body_bytes_counts_the_bytes_on_the_wire_not_the_inflated_ones(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    inflated = b"a" * 100_000
    body = gzip.compress(inflated)
    assert len(body) < 1000
    proxy = await start_proxy(limits={"max_body_bytes": 1000})
    resp = await proxy.post("/2026-07/echo/x", data=body, headers={"Content-Encoding": "gzip"})
    assert resp.status == 200
    assert criteo.last_request.body == body
    too_big = await proxy.post(
        "/2026-07/echo/x", data=os.urandom(1001), headers={"Content-Encoding": "gzip"}
    )
    assert too_big.status == 413


# --- Expect: 100-continue -------------------------------------------------------------


async def test_expect_100_continue_is_answered_before_the_body_and_not_forwarded(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    port = proxy_port(proxy)
    headers = {
        "Content-Length": "5",
        "Content-Type": "application/octet-stream",
        "Expect": "100-continue",
    }
    async with raw_connection(port) as (reader, writer):
        await send(writer, request_bytes("POST", "/2026-07/echo/expect", port, headers))
        async with asyncio.timeout(TIMEOUT):
            interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        await send(writer, b"he\x00lo")
        final = await read_answer(reader)
    assert final.status == 200
    assert json.loads(final.body)["bodyLength"] == 5
    assert criteo.last_request.body == b"he\x00lo"
    assert "Expect" not in criteo.last_request.headers
    assert_proxy_token(criteo)


async def test_expect_with_a_body_over_the_limit_is_413_without_100_continue(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(limits={"max_body_bytes": 10})
    port = proxy_port(proxy)
    headers = {"Content-Length": "100", "Expect": "100-continue"}
    async with raw_connection(port) as (reader, writer):
        await send(writer, request_bytes("POST", "/2026-07/echo/expect", port, headers))
        answer = await read_answer(reader)  # the first thing the proxy says
    assert_proxy_error(answer.status, answer.headers, answer.body, 413, "body_too_large")
    assert criteo.requests == []


async def test_expect_on_a_refused_request_gets_no_100_continue(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    port = proxy_port(proxy)
    headers = {"Content-Length": "5", "Expect": "100-continue"}
    async with raw_connection(port) as (reader, writer):
        await send(writer, request_bytes("POST", "http://evil.example/x", port, headers))
        answer = await read_answer(reader)
    assert_proxy_error(answer.status, answer.headers, answer.body, 400, "absolute_uri_not_allowed")
    assert criteo.requests == []


# --- max_body_bytes -------------------------------------------------------------------


async def test_content_length_over_max_body_bytes_is_413_and_nothing_is_forwarded(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(limits={"max_body_bytes": 10})
    port = proxy_port(proxy)
    answer = await raw_request(
        port,
        request_bytes("POST", "/2026-07/echo/x", port, {"Content-Length": "11"}, b"x" * 11),
    )
    assert_proxy_error(answer.status, answer.headers, answer.body, 413, "body_too_large")
    assert criteo.requests == []


async def test_body_at_max_body_bytes_is_forwarded(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(limits={"max_body_bytes": 10})
    resp = await proxy.post("/2026-07/echo/x", data=b"x" * 10)
    assert resp.status == 200
    assert criteo.last_request.body == b"x" * 10


async def test_chunked_body_over_max_body_bytes_is_413_and_nothing_is_forwarded(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(limits={"max_body_bytes": 10})
    port = proxy_port(proxy)
    chunked = b"8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n"
    answer = await raw_request(
        port,
        request_bytes("POST", "/2026-07/echo/x", port, {"Transfer-Encoding": "chunked"}, chunked),
    )
    assert_proxy_error(answer.status, answer.headers, answer.body, 413, "body_too_large")
    assert criteo.requests == []


async def test_streamed_chunked_body_going_over_max_body_bytes_is_413(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """Past retry.body_limit the body streams; crossing the limit mid-stream is still 413."""
    upstream_reading = asyncio.Event()

    async def reads_body(request: web.Request) -> web.Response:
        upstream_reading.set()
        with suppress(aiohttp.ClientError, ConnectionError, asyncio.IncompleteReadError):
            await request.read()
        return web.Response(text="read")

    criteo.handlers["/2026-07/upload"] = reads_body
    proxy = await start_proxy(limits={"max_body_bytes": 10}, retry={"body_limit": 4})
    port = proxy_port(proxy)
    async with raw_connection(port) as (reader, writer):
        head = request_bytes("POST", "/2026-07/upload", port, {"Transfer-Encoding": "chunked"})
        await send(writer, head + b"6\r\n012345\r\n")
        async with asyncio.timeout(TIMEOUT):
            await upstream_reading.wait()
        await send(writer, b"6\r\n6789ab\r\n0\r\n\r\n")
        answer = await read_answer(reader)
    assert_proxy_error(answer.status, answer.headers, answer.body, 413, "body_too_large")


# --- a body slower than response_timeout ----------------------------------------------


async def test_a_steady_upload_longer_than_response_timeout_is_not_cut(
    start_proxy: Any, criteo: FakeCriteo
) -> None:
    """response_timeout bounds the wait for Criteo's answer and stalls, not a moving upload."""
    proxy = await start_proxy(upstream={"response_timeout": 0.5}, retry={"body_limit": 10})
    chunks = [b"x" * 1000] * 6

    async def slow_body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            await asyncio.sleep(0.15)  # the client's own pace: 0.9 s in all
            yield chunk

    resp = await proxy.put(
        "/2026-07/echo/upload",
        data=slow_body(),
        headers={"Content-Length": str(sum(map(len, chunks)))},
    )
    assert resp.status == 200
    assert (await resp.json())["bodyLength"] == 6000


@pytest.mark.parametrize("body_limit", [1_000_000, 4], ids=["buffered", "streamed"])
async def test_a_request_body_that_stalls_is_cut_after_response_timeout_with_408(
    start_proxy: StartProxy, criteo: FakeCriteo, body_limit: int
) -> None:
    """The client's body may pause at most upstream.response_timeout between two chunks,
    whether it is being buffered for a 401 replay or streamed to Criteo."""
    proxy = await start_proxy(upstream={"response_timeout": 0.3}, retry={"body_limit": body_limit})
    port = proxy_port(proxy)
    async with raw_connection(port) as (reader, writer):
        head = request_bytes("POST", "/2026-07/echo/stall", port, {"Content-Length": "100"})
        await send(writer, head + b"0123456789")  # 10 of the 100 bytes, then nothing
        answer = await read_answer(reader)
    assert_proxy_error(answer.status, answer.headers, answer.body, 408, "body_timeout")
    assert "upstream.response_timeout" in json.loads(answer.body)["errors"][0]["detail"]
    assert all(seen.body != b"0123456789" * 10 for seen in criteo.requests)
