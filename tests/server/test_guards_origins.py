"""Guards on browser requests (DESIGN 4): cross-site ones refused, allowed origins get CORS."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import StartProxy, raw_request
from tests.server.conftest import assert_proxy_error

# --- browser requests -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:3000"},  # another local port is another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_cross_site_browser_requests_are_refused(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, headers: dict[str, str]
) -> None:
    resp = await proxy.get("/2026-07/advertisers/me", headers=headers)
    assert resp.status == 403
    assert resp.headers["X-Criteo-Proxy-Error"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert criteo.requests == []


@pytest.mark.parametrize(
    "origin",
    [
        "https://xn--a.example",
        "http://xn--",
        "http://[::1",
        "http://a\u00e9\u200b.b",
        "http://[::1]@",  # yarl raises IndexError, not ValueError, on it
    ],
)
async def test_an_origin_that_cannot_be_parsed_is_refused_in_the_envelope(
    start_proxy: StartProxy, criteo: FakeCriteo, origin: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await start_proxy(security={"allowed_origins": ["http://localhost:3000"]})
    resp = await proxy.get("/2026-07/echo/x", headers={"Origin": origin})
    assert resp.status == 403
    assert_proxy_error(await resp.json(), "origin_not_allowed")
    assert criteo.requests == []
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("fetch_site", ["none", "same-origin"])
async def test_non_cross_site_fetch_metadata_is_fine(
    proxy: TestClient[Any, Any], fetch_site: str
) -> None:
    resp = await proxy.get("/2026-07/advertisers/me", headers={"Sec-Fetch-Site": fetch_site})
    assert resp.status == 200


async def test_allowed_origin_gets_cors_headers_on_answers_and_errors(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(
        security={"allowed_origins": ["http://LOCALHOST:3000"], "read_only": True}
    )
    origin = {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}
    ok = await proxy.get("/2026-07/advertisers/me", headers=origin)
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "X-Request-Id" in ok.headers["Access-Control-Expose-Headers"]
    refused = await proxy.post("/2026-07/echo/x", headers=origin)
    assert refused.status == 405
    assert refused.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "X-Criteo-Proxy-Error" in refused.headers["Access-Control-Expose-Headers"]


async def test_a_streamed_answer_carries_the_cors_headers_too(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """Answers over 64 KiB are streamed, their headers sent before the handler returns."""
    big = b"x" * (300 * 1024)

    async def report(request: web.Request) -> web.Response:
        return web.Response(body=big, content_type="text/csv")

    criteo.handlers["/2026-07/report.csv"] = report
    proxy = await start_proxy(security={"allowed_origins": ["http://localhost:3000"]})
    origin = {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}
    resp = await proxy.get("/2026-07/report.csv", headers=origin)
    assert resp.status == 200
    assert await resp.read() == big
    assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "X-Request-Id" in resp.headers["Access-Control-Expose-Headers"]
    assert resp.headers.getall("Vary") == ["Origin"]


async def test_preflight_of_an_allowed_origin_is_answered_by_the_proxy_without_a_key(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(
        security={"allowed_origins": ["http://localhost:3000"], "api_keys": ["k1"]}
    )
    resp = await proxy.options(
        "/2026-07/advertisers/me",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "X-Proxy-Key" in resp.headers["Access-Control-Allow-Headers"]
    assert "GET" in resp.headers["Access-Control-Allow-Methods"]
    assert criteo.requests == []


async def test_aiohttps_own_417_to_an_allowed_origin_carries_the_cors_headers(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """An answer aiohttp makes itself (417 to an unknown Expect) is a browser's answer too."""
    proxy = await start_proxy(security={"allowed_origins": ["http://localhost:3000"]})
    resp = await raw_request(
        proxy.port,
        b"POST /2026-07/echo/x HTTP/1.1\r\nHost: localhost\r\nExpect: something\r\n"
        b"Origin: http://localhost:3000\r\nSec-Fetch-Site: same-site\r\n"
        b"Content-Length: 2\r\n\r\nhi",
    )
    assert resp.status == 417
    assert resp.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert criteo.requests == []
