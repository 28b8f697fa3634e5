"""What the forwarding tests share: raw bytes on real sockets, the proxy's own error, stalls.

The fake Criteo is a real aiohttp server on 127.0.0.1 and the proxy a real server in
front of it; ``raw_request`` and ``raw_connection`` send bytes a client library would
rewrite. Nothing here talks to any address but loopback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import RawResponse, read_raw_response

ServerFactory = Callable[..., Awaitable[TestServer]]
Headers = Mapping[str, str] | Iterable[tuple[str, str]]

HOP_BY_HOP = (
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
)
TIMEOUT = 10  # seconds a raw read may take before the test fails instead of hanging


# --- helpers --------------------------------------------------------------------------


def request_bytes(
    method: str, target: str, port: int, headers: Headers = (), body: bytes = b""
) -> bytes:
    """One HTTP/1.1 request exactly as written (a Host header for the proxy first)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in items]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


@asynccontextmanager
async def raw_connection(
    port: int,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def read_answer(reader: asyncio.StreamReader) -> RawResponse:
    async with asyncio.timeout(TIMEOUT):
        return await read_raw_response(reader)


def lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def assert_proxy_error(status: int, headers: Mapping[str, str], body: bytes, want: int, code: str):
    """The proxy's own error: status, X-Criteo-Proxy-Error and Criteo's envelope (§1)."""
    headers = lower(headers)
    assert status == want, body
    assert headers["x-criteo-proxy-error"] == code
    assert headers["content-type"].startswith("application/json")
    envelope = json.loads(body)
    assert list(envelope) == ["errors"]
    [error] = envelope["errors"]
    assert error["type"] == "proxy"
    assert error["code"] == code
    assert isinstance(error["title"], str)
    assert error["title"]
    assert isinstance(error["detail"], str)
    assert error["detail"]
    assert error["traceId"] == headers["x-request-id"]


def assert_proxy_token(criteo: FakeCriteo) -> str:
    """Upstream saw exactly one Authorization: the proxy's Bearer, issued by the fake."""
    seen = criteo.last_request
    [authorization] = seen.headers.getall("Authorization")
    scheme, _, token = authorization.partition(" ")
    assert scheme == "Bearer"
    assert token in criteo.issued
    return token


def proxy_port(client: TestClient[Any, Any]) -> int:
    assert client.port is not None
    return client.port


@pytest.fixture
def release() -> Iterable[asyncio.Event]:
    """An event fake handlers wait on; set at teardown so no handler outlives its test."""
    event = asyncio.Event()
    yield event
    event.set()


@pytest.fixture
async def stalling(criteo_server: TestServer, release: asyncio.Event) -> asyncio.Event:
    # Depends on criteo_server so that the event is set before the fake shuts down.
    return release


# --- an upstream that says anything -----------------------------------------------------


def raw_answer(
    headers: Headers = (),
    body: bytes = b"",
    *,
    status_line: bytes = b"HTTP/1.1 200 OK",
    content_length: bool = True,
) -> bytes:
    """One HTTP/1.1 answer exactly as written, header values as raw bytes; the
    connection closes after it, so that no framing mistake leaks into the next one."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    lines = [status_line, b"Connection: close"]
    lines += [name.encode("latin-1") + b": " + _raw(value) for name, value in items]
    if content_length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _raw(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


@dataclass
class HostileUpstream:
    """A raw socket server standing for Criteo's API: it answers every request with
    ``answer``, byte for byte, whatever an HTTP library would refuse to write."""

    url: str = ""
    answer: bytes = field(default_factory=lambda: raw_answer(body=b"{}"))
    requests: int = 0


async def read_request(reader: asyncio.StreamReader) -> None:
    """Read one request off the socket: its head, and the body its Content-Length names."""
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            await reader.readexactly(int(value))


@pytest.fixture
async def hostile_upstream() -> AsyncIterator[HostileUpstream]:
    upstream = HostileUpstream()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            upstream.requests += 1
            writer.write(upstream.answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstream.url = f"http://127.0.0.1:{port}"
    async with server:
        yield upstream
        server.close()


@pytest.fixture
def start_behind_hostile(
    start_proxy: Any, hostile_upstream: HostileUpstream, criteo_url: str
) -> Callable[..., Awaitable[TestClient[Any, Any]]]:
    """Start the proxy in front of HOSTILE_UPSTREAM, its tokens from the fake Criteo."""

    async def start(**sections: Any) -> TestClient[Any, Any]:
        upstream = {"url": hostile_upstream.url, "token_url": f"{criteo_url}/oauth2/token"}
        return await start_proxy(upstream=upstream | sections.pop("upstream", {}), **sections)

    return start
