"""Hostile clients (DESIGN 4): malformed requests, slow or vanishing clients, never a 500."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.loader import parse_config
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from proxy.server.app import build_app
from proxy.server.listeners import ProxyRunner, build_server_options
from tests.conftest import StartProxy, raw_request

# --- hostile input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: localhost\r\nX-Bad: a\rb\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n",
        b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /x HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
    ],
    ids=["garbage", "bare-cr", "long-header", "long-line", "too-many-headers"],
)
async def test_malformed_requests_get_a_4xx_and_the_server_keeps_serving(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, request_bytes: bytes
) -> None:
    resp = await raw_request(proxy.port, request_bytes)
    assert 400 <= resp.status < 500
    assert criteo.requests == []
    assert (await proxy.get("/_proxy/health")).status == 200


async def test_a_client_that_sends_headers_slowly_is_cut_off(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(listen={"header_timeout": 0.3})
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(b"GET /_proxy/health HTTP/1.1\r\nHost: local")
        await writer.drain()
        # the proxy closes the connection: read returns EOF well before this bound
        data = await asyncio.wait_for(reader.read(), timeout=5)
        assert b"200" not in data
    finally:
        writer.close()


async def test_client_leaving_mid_download_cancels_the_upstream_transfer(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    upstream_gone = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            while True:
                await response.write(b"x" * 65536)
        except (ConnectionError, asyncio.CancelledError):
            # the test server cancels a handler whose client left (handler_cancellation)
            upstream_gone.set()
            raise

    criteo.handlers["/2026-07/endless"] = endless
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET /2026-07/endless HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    await reader.readexactly(100_000)
    writer.close()
    await asyncio.wait_for(upstream_gone.wait(), timeout=10)


async def test_client_leaving_mid_upload_cancels_the_upstream_request(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    upstream_saw_break = asyncio.Event()

    async def slurp(request: web.Request) -> web.Response:
        try:
            await request.read()
        except (ConnectionError, asyncio.CancelledError, aiohttp.ClientPayloadError):
            upstream_saw_break.set()
            raise
        return web.Response(text="complete?")

    criteo.handlers["/2026-07/upload"] = slurp
    _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        b"POST /2026-07/upload HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Length: 50000000\r\n\r\n" + b"y" * 20_000_000
    )
    await writer.drain()
    writer.close()
    await asyncio.wait_for(upstream_saw_break.wait(), timeout=10)
    assert (await proxy.get("/_proxy/health")).status == 200


# --- no request header can make a 500 -----------------------------------------------------


@pytest.fixture(scope="module")
def threaded_proxy() -> Iterator[int]:
    """The fake and the proxy as real servers on a loop of their own, for sync hypothesis tests."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runners: list[web.AppRunner] = []

    async def start() -> int:
        fake = web.AppRunner(FakeCriteo().build_app(), access_log=None)
        await fake.setup()
        await web.TCPSite(fake, "127.0.0.1", 0).start()
        runners.append(fake)
        fake_port = fake.addresses[0][1]
        config = parse_config(
            {
                "upstream": {"url": f"http://127.0.0.1:{fake_port}", "response_timeout": 5},
                "credentials": {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET},
                "security": {"allowed_origins": ["http://localhost:3000"]},
                "logging": {"access_log": False},
            },
            environ={},
        )
        runner = ProxyRunner(build_app(config), **build_server_options(config.listen))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return int(runner.addresses[0][1])

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    yield port

    async def stop() -> None:
        for runner in reversed(runners):
            await runner.cleanup()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


# Framing headers (Content-Length, Transfer-Encoding, Expect) are left out: a body that
# disagrees with them makes a request wait for bytes, which is a timeout, not this test.
_FUZZED_NAMES = st.sampled_from(
    [
        "Host",
        "Origin",
        "Sec-Fetch-Site",
        "X-Request-Id",
        "X-Proxy-Key",
        "Authorization",
        "Connection",
        "Upgrade",
        "Content-Encoding",
        "Accept-Encoding",
        "Access-Control-Request-Method",
        "Access-Control-Request-Headers",
        "User-Agent",
        "X-Anything",
    ]
) | st.from_regex(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}", fullmatch=True)
_NASTY_HOSTS = ["xn--a.example", "xn--a", "xn--", "[::1", "a..b", "é.example", "a\u200b.b", "%41"]
_NASTY_VALUES = st.sampled_from(_NASTY_HOSTS).flatmap(
    lambda host: st.sampled_from(
        [host, f"{host}:8080", f"http://{host}", f"https://{host}:3000", f"http://{host}/x"]
    )
)
_FUZZED_VALUES = st.one_of(
    _NASTY_VALUES.map(str.encode),
    st.text(max_size=40).map(lambda t: ("http://" + t).encode()),
    st.text(max_size=40).map(str.encode),
    st.binary(max_size=80),
).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def _status_of(port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                break
            head += chunk
    status_line, _, rest = head.partition(b"\r\n")
    return int(status_line.split(b" ")[1]), rest


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    headers=st.lists(
        st.tuples(st.sampled_from(["Host", "Origin"]), _NASTY_VALUES.map(str.encode))
        | st.tuples(_FUZZED_NAMES, _FUZZED_VALUES),
        min_size=1,
        max_size=6,
    ),
    path=st.sampled_from([b"/2026-07/echo/x", b"/_proxy/ready", b"/_proxy/health", b"http://x/"])
    | st.binary(max_size=40).map(
        lambda b: b"/2026-07/echo/" + b.replace(b" ", b"").replace(b"\r", b"").replace(b"\n", b"")
    )
    | _NASTY_VALUES.map(str.encode),
    method=st.sampled_from(["GET", "OPTIONS", "POST"]),
)
def test_no_request_header_value_makes_a_500(
    threaded_proxy: int, headers: list[tuple[str, bytes]], path: bytes, method: str
) -> None:
    """Whatever the header values or target (bad punycode, control bytes, Latin-1): never a 500."""
    lines = [method.encode() + b" " + path + b" HTTP/1.1"]
    if not any(name.lower() == "host" for name, _ in headers):
        lines.append(b"Host: 127.0.0.1")
    lines += [name.encode() + b": " + value for name, value in headers]
    status, head = _status_of(threaded_proxy, b"\r\n".join(lines) + b"\r\n\r\n")
    assert status != 500, (headers, head)
    if status >= 500:  # only the proxy's own, enveloped 502 / 504
        assert b"X-Criteo-Proxy-Error" in head, (headers, head)
