"""The header policy, over real sockets: hop-by-hop headers dropped both ways, the rest as sent."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import raw_request
from tests.forwarding.conftest import (
    HOP_BY_HOP,
    assert_proxy_token,
    proxy_port,
    request_bytes,
)

# --- headers --------------------------------------------------------------------------


async def test_hop_by_hop_request_headers_dropped_and_the_rest_pass_unchanged(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, criteo_url: str
) -> None:
    port = proxy_port(proxy)
    headers = [
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("X-Secret-Hop", "do-not-forward"),
        ("Keep-Alive", "timeout=5, max=100"),
        ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Upgrade", "h2c"),
        ("X-Foo", "bar  baz"),
        ("User-Agent", "my-tool/1.0 (+test)"),
        ("Accept", "application/json, text/plain;q=0.5"),
        ("Accept-Encoding", "gzip;q=1.0, br, identity;q=0"),
    ]
    answer = await raw_request(port, request_bytes("GET", "/2026-07/advertisers/me", port, headers))
    assert answer.status == 200
    seen = criteo.last_request.headers
    for name in (*HOP_BY_HOP, "x-secret-hop"):
        assert name not in seen, name
    assert seen["Host"] == criteo_url.removeprefix("http://")
    assert seen["X-Foo"] == "bar  baz"
    assert seen["User-Agent"] == "my-tool/1.0 (+test)"
    assert seen["Accept"] == "application/json, text/plain;q=0.5"
    assert seen["Accept-Encoding"] == "gzip;q=1.0, br, identity;q=0"
    assert_proxy_token(criteo)


async def test_headers_the_client_did_not_send_are_not_added(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    port = proxy_port(proxy)
    answer = await raw_request(port, request_bytes("GET", "/2026-07/advertisers/me", port))
    assert answer.status == 200
    seen = criteo.last_request.headers
    for name in ("User-Agent", "Accept", "Accept-Encoding", "Content-Type", "Content-Length"):
        assert name not in seen, name
    assert set(map(str.lower, seen)) == {"host", "authorization", "x-request-id"}


async def test_hop_by_hop_response_headers_dropped_and_the_rest_pass_unchanged(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    async def answer_with_hops(request: web.Request) -> web.Response:
        return web.Response(
            body=b"ok",
            content_type="text/plain",
            headers={
                "Connection": "X-Upstream-Hop",
                "X-Upstream-Hop": "secret",
                "Keep-Alive": "timeout=5",
                "Proxy-Authenticate": 'Basic realm="corp"',
                "Trailer": "X-Checksum",
                "Upgrade": "h2c",
                "X-Custom": "kept  as is",
                "Cache-Control": "no-store",
            },
        )

    criteo.handlers["/2026-07/hops"] = answer_with_hops
    port = proxy_port(proxy)
    answer = await raw_request(port, request_bytes("GET", "/2026-07/hops", port))
    assert answer.status == 200
    assert answer.body == b"ok"
    for name in ("x-upstream-hop", "keep-alive", "proxy-authenticate", "trailer", "upgrade"):
        assert name not in answer.headers, name
    assert "x-upstream-hop" not in answer.headers.get("connection", "").lower()
    assert answer.headers["x-custom"] == "kept  as is"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-type"] == "text/plain"
    assert criteo.last_request.raw_path == "/2026-07/hops"
