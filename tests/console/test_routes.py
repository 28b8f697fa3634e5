"""The console's routes are safe: security headers, a self-contained page, guards and keys."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import DEMO_CLIENT_SECRET, FakeCriteo
from tests.conftest import StartProxy, raw_request

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
CONSOLE_PATHS = [
    "/_proxy/",
    "/_proxy/console",
    "/_proxy/status",
    "/_proxy/requests",
    "/_proxy/static/console.js",
    "/_proxy/static/console.css",
    "/_proxy/static/favicon.svg",
]


# --- safety -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CONSOLE_PATHS)
async def test_every_console_answer_carries_the_security_headers(
    proxy: TestClient[Any, Any], path: str
) -> None:
    resp = await proxy.get(path)
    assert resp.status == 200
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers[name] == value


async def test_the_page_is_self_contained_and_loads_nothing_from_elsewhere(
    proxy: TestClient[Any, Any],
) -> None:
    page = await (await proxy.get("/_proxy/")).text()
    assert page.startswith("<!doctype html>")
    assert (await proxy.get("/_proxy/console")).status == 200
    # Every src / href is a path on the proxy itself; no inline script or style.
    references = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert references
    assert all(ref.startswith("/_proxy/static/") for ref in references), references
    assert "<script>" not in page
    assert "style=" not in page
    script = await (await proxy.get("/_proxy/static/console.js")).text()
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script
    # It reads the proxy's own documents only (the browser test watches the network too).
    fetched = set(re.findall(r"getJson\([`\"]([^`\"?]*)", script))
    assert fetched == {"/_proxy/status", "/_proxy/requests"}
    assert script.count("fetch(") == 1  # inside getJson
    assert "https://" not in script
    assert (await proxy.get("/_proxy/static/nothing.js")).status == 404


async def test_no_byte_served_holds_the_token_or_the_secret(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    async def echo_auth(request: web.Request) -> web.Response:
        # A hostile upstream echoing the credential it got: the console must still not keep it.
        return web.json_response(
            {"errors": [{"detail": request.headers.get("Authorization", "")}]}, status=401
        )

    criteo.handlers["/2026-07/echo-auth"] = echo_auth
    await proxy.get("/2026-07/advertisers/me?client_secret=" + DEMO_CLIENT_SECRET)
    await proxy.get("/2026-07/echo-auth")
    tokens = set(criteo.issued)
    assert tokens
    served = ""
    for path in [*CONSOLE_PATHS, "/_proxy/metrics", "/_proxy/ready"]:
        resp = await proxy.get(path)
        served += "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
        served += await resp.text()
    for needle in (*tokens, DEMO_CLIENT_SECRET):
        assert needle not in served


async def test_console_disabled_answers_404_on_its_paths(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(console={"enabled": False})
    await proxy.get("/2026-07/echo/x")
    for path in CONSOLE_PATHS:
        resp = await proxy.get(path)
        assert resp.status == 404, path
        assert resp.headers["X-Criteo-Proxy-Error"] == "not_found"
    assert (await proxy.get("/_proxy/health")).status == 200


async def test_the_console_is_guarded_like_every_proxy_path(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    for path in ("/_proxy/", "/_proxy/status", "/_proxy/requests"):
        foreign = await raw_request(
            proxy.port, f"GET {path} HTTP/1.1\r\nHost: evil.example\r\n\r\n".encode()
        )
        assert foreign.status == 403
        assert foreign.headers["x-criteo-proxy-error"] == "host_not_allowed"
        cross = await proxy.get(path, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status == 403
        assert "Access-Control-Allow-Origin" not in cross.headers


async def test_with_inbound_keys_the_console_needs_the_key_or_its_session_cookie(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(security={"api_keys": ["k-console-1"]})
    for path in ("/_proxy/", "/_proxy/status", "/_proxy/requests", "/_proxy/static/console.js"):
        resp = await proxy.get(path)
        assert resp.status == 401, path
        assert resp.headers["X-Criteo-Proxy-Error"] == "proxy_key_required"
    assert (await proxy.get("/_proxy/status", headers={"X-Proxy-Key": "k-console-1"})).status == 200
    assert (await proxy.get("/_proxy/?key=wrong")).status == 401
    assert (await proxy.get("/_proxy/status?key=k-console-1")).status == 401  # pages only

    login = await proxy.get("/_proxy/?key=k-console-1", allow_redirects=False)
    assert login.status == 303
    assert login.headers["Location"] == "/_proxy/"
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/_proxy/" in cookie
    assert "k-console-1" not in cookie  # a session id, never the key
    session = cookie.split(";", 1)[0]
    proxy.session.cookie_jar.clear()  # each request below says itself what it brings
    for path in ("/_proxy/", "/_proxy/status", "/_proxy/requests", "/_proxy/static/console.js"):
        resp = await proxy.get(path, headers={"Cookie": session})
        assert resp.status == 200, path
    # The cookie opens the console only, never a forwarded path.
    forwarded = await proxy.get("/2026-07/echo/x", headers={"Cookie": session})
    assert forwarded.status == 401
    forged = await proxy.get("/_proxy/status", headers={"Cookie": session + "x"})
    assert forged.status == 401
    # A session does not make any ?key= good: a wrong one is refused, and opens nothing.
    wrong = await proxy.get(
        "/_proxy/?key=wrong", headers={"Cookie": session}, allow_redirects=False
    )
    assert wrong.status == 401
    assert "Set-Cookie" not in wrong.headers
    keyed = await proxy.get(
        "/_proxy/?key=wrong", headers={"X-Proxy-Key": "k-console-1"}, allow_redirects=False
    )
    assert keyed.status == 401


async def test_a_console_path_refused_for_want_of_a_session_says_how_to_open_one(
    start_proxy: StartProxy,
) -> None:
    """A stale cookie (the proxy restarted) is told about ?key=, not only X-Proxy-Key."""
    proxy = await start_proxy(security={"api_keys": ["k-console-1"]})
    stale = {"Cookie": "criteo_proxy_console_default=from-before-the-restart"}
    for path in ("/_proxy/", "/_proxy/status", "/_proxy/requests"):
        resp = await proxy.get(path, headers=stale)
        assert resp.status == 401
        (error,) = (await resp.json())["errors"]
        assert "/_proxy/?key=" in error["detail"], error["detail"]
        assert "X-Proxy-Key" in error["detail"]
        assert "k-console-1" not in error["detail"]
    forwarded = await proxy.get("/2026-07/echo/x", headers=stale)
    (error,) = (await forwarded.json())["errors"]
    assert "?key=" not in error["detail"]  # a forwarded path has no session to open


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/_proxy/", {}, 401),
        ("/_proxy/status", {"Sec-Fetch-Site": "cross-site"}, 403),
        ("/_proxy/static/nothing.js", {"X-Proxy-Key": "k-console-1"}, 404),
        ("/_proxy/requests?after=x", {"X-Proxy-Key": "k-console-1"}, 400),
    ],
)
async def test_the_consoles_error_answers_carry_the_security_headers_too(
    start_proxy: StartProxy, path: str, headers: dict[str, str], status: int
) -> None:
    proxy = await start_proxy(security={"api_keys": ["k-console-1"]})
    resp = await proxy.get(path, headers=headers)
    assert resp.status == status
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers[name] == value
