"""Every error the proxy makes names its cause in the status line (DESIGN 1).

pandas, urllib, R and DuckDB show only that line: ``HTTP Error 502: Bad Gateway``
told the analyst nothing. Now it is ``502 Criteo refused the app credentials``: a
fixed text per code, printable ASCII, at most 80 characters, never the standard
phrase alone. Criteo's own answers keep Criteo's status line.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from http import HTTPStatus
from typing import Any, get_args

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.errors import REASONS, ErrorCode
from proxy.fakes.criteo import FakeCriteo
from tests.conftest import RawResponse, StartProxy, raw_request

RAW_PATH = "/2026-07/advertisers/me"


def request(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *headers]
    if not any(h.lower().startswith("host:") for h in headers):
        lines.insert(1, "Host: 127.0.0.1")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def release(criteo_server: TestServer) -> Iterator[asyncio.Event]:
    """Fake handlers wait on it; set before the fake shuts down, so none outlives a test."""
    event = asyncio.Event()
    yield event
    event.set()


Scenario = Callable[[StartProxy, FakeCriteo, str, asyncio.Event], Awaitable[RawResponse]]


async def send_to(proxy: TestClient[Any, Any], data: bytes) -> RawResponse:
    assert proxy.port is not None
    async with asyncio.timeout(10):
        return await raw_request(proxy.port, data)


async def token_request_failed(start: StartProxy, criteo: FakeCriteo, *_: Any) -> RawResponse:
    criteo.clients = {"another-client": "another-secret"}
    return await send_to(await start(), request("GET", RAW_PATH))


async def token_endpoint_unavailable(start: StartProxy, criteo: FakeCriteo, *_: Any) -> RawResponse:
    criteo.token_failure_status = 503
    return await send_to(await start(), request("GET", RAW_PATH))


async def upstream_unavailable(
    start: StartProxy, criteo: FakeCriteo, url: str, _: Any
) -> RawResponse:
    proxy = await start(
        upstream={"url": f"http://127.0.0.1:{closed_port()}", "token_url": url + "/oauth2/token"},
        retry={"transient": {"attempts": 0}},
    )
    return await send_to(proxy, request("GET", RAW_PATH))


async def upstream_timeout(
    start: StartProxy, criteo: FakeCriteo, _: str, release: asyncio.Event
) -> RawResponse:
    async def never_answers(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="too late")

    criteo.handlers["/2026-07/slow"] = never_answers
    proxy = await start(upstream={"response_timeout": 0.2})
    return await send_to(proxy, request("GET", "/2026-07/slow"))


async def host_not_allowed(start: StartProxy, *_: Any) -> RawResponse:
    return await send_to(await start(), request("GET", RAW_PATH, "Host: evil.example"))


async def origin_not_allowed(start: StartProxy, *_: Any) -> RawResponse:
    headers = ("Origin: https://evil.example",)
    return await send_to(await start(), request("GET", RAW_PATH, *headers))


async def absolute_uri_not_allowed(start: StartProxy, *_: Any) -> RawResponse:
    target = "http://other.example/2026-07/advertisers/me"
    return await send_to(await start(), request("GET", target, "Host: other.example"))


async def method_not_allowed(start: StartProxy, *_: Any) -> RawResponse:
    proxy = await start(security={"read_only": True})
    return await send_to(proxy, request("DELETE", "/2026-07/campaigns/1"))


async def path_not_allowed(start: StartProxy, *_: Any) -> RawResponse:
    proxy = await start(security={"deny_paths": ["^/2026-07/campaigns"]})
    return await send_to(proxy, request("GET", "/2026-07/campaigns/1"))


async def proxy_key_required(start: StartProxy, *_: Any) -> RawResponse:
    proxy = await start(security={"api_keys": ["k-1"]})
    return await send_to(proxy, request("GET", RAW_PATH))


async def body_too_large(start: StartProxy, *_: Any) -> RawResponse:
    proxy = await start(limits={"max_body_bytes": 10})
    return await send_to(proxy, request("POST", "/2026-07/echo/x", body=b"x" * 100))


async def body_timeout(start: StartProxy, *_: Any) -> RawResponse:
    proxy = await start(upstream={"response_timeout": 0.2})
    stalled = request("POST", "/2026-07/echo/x", "Content-Length: 100") + b"0123456789"
    return await send_to(proxy, stalled)


async def rate_limited(start: StartProxy, criteo: FakeCriteo, *_: Any) -> RawResponse:
    # One call a minute, starting now: the second must wait a minute, past max_wait.
    criteo.rate_limit, criteo.rate_window_seconds = 1, 60
    criteo.rate_window_start = time.time()
    proxy = await start(rate_limit={"max_wait": 0.5})
    assert (await send_to(proxy, request("GET", "/2026-07/echo/first"))).status == 200
    return await send_to(proxy, request("GET", "/2026-07/echo/second"))


async def not_found(start: StartProxy, *_: Any) -> RawResponse:
    return await send_to(await start(), request("GET", "/_proxy/nothing"))


async def bad_request(start: StartProxy, *_: Any) -> RawResponse:
    return await send_to(await start(), request("GET", "/_proxy/requests?after=x"))


SCENARIOS: dict[ErrorCode, Scenario] = {
    "token_request_failed": token_request_failed,
    "token_endpoint_unavailable": token_endpoint_unavailable,
    "upstream_unavailable": upstream_unavailable,
    "upstream_timeout": upstream_timeout,
    "host_not_allowed": host_not_allowed,
    "origin_not_allowed": origin_not_allowed,
    "absolute_uri_not_allowed": absolute_uri_not_allowed,
    "method_not_allowed": method_not_allowed,
    "path_not_allowed": path_not_allowed,
    "proxy_key_required": proxy_key_required,
    "body_too_large": body_too_large,
    "body_timeout": body_timeout,
    "rate_limited": rate_limited,
    "not_found": not_found,
    "bad_request": bad_request,
}


def test_every_code_has_a_scenario_here() -> None:
    assert set(SCENARIOS) == set(get_args(ErrorCode))


@pytest.mark.parametrize("code", sorted(get_args(ErrorCode)))
def test_every_reason_is_short_printable_ascii_and_not_the_standard_phrase(code: str) -> None:
    reason = REASONS[code]  # type: ignore[index]
    assert reason.isascii()
    assert reason.isprintable()
    assert 0 < len(reason) <= 80
    assert reason.strip() == reason
    standard = {status.phrase.lower() for status in HTTPStatus}
    assert reason.lower() not in standard


@pytest.mark.parametrize("code", list(SCENARIOS))
async def test_the_status_line_names_the_cause(
    start_proxy: StartProxy,
    criteo: FakeCriteo,
    criteo_url: str,
    release: asyncio.Event,
    code: ErrorCode,
) -> None:
    answer = await SCENARIOS[code](start_proxy, criteo, criteo_url, release)
    assert answer.headers.get("x-criteo-proxy-error") == code, answer.body
    assert answer.reason == REASONS[code]


async def test_criteos_own_answers_keep_criteos_status_line(start_proxy: StartProxy) -> None:
    proxy = await start_proxy()
    answer = await send_to(proxy, request("GET", "/2026-07/campaigns/1"))
    assert answer.status == 404
    assert "x-criteo-proxy-error" not in answer.headers
    assert answer.reason == "Not Found"


async def test_a_client_that_shows_only_the_status_line_shows_the_cause(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """Python's urllib, as pandas.read_csv and many scripts use it: HTTPError's text."""
    criteo.clients = {"another-client": "another-secret"}
    proxy = await start_proxy()
    url = str(proxy.make_url(RAW_PATH))

    def fetch() -> str:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            opener.open(url, timeout=10)
        except urllib.error.HTTPError as exc:
            exc.close()
            return str(exc)
        return "no error"

    shown = await asyncio.to_thread(fetch)
    assert shown == "HTTP Error 502: Criteo refused the app credentials"


async def test_not_ready_says_why_in_the_status_line(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    criteo.clients = {"another-client": "another-secret"}
    answer = await send_to(await start_proxy(), request("GET", "/_proxy/ready"))
    assert answer.status == 503
    assert answer.reason == REASONS["token_request_failed"]


async def test_an_unknown_expectation_says_which_one_works(start_proxy: StartProxy) -> None:
    expecting = request("POST", "/2026-07/echo/x", "Expect: something-else", body=b"{}")
    answer = await send_to(await start_proxy(), expecting)
    assert answer.status == 417
    assert answer.reason == "criteo-proxy accepts only Expect: 100-continue"
