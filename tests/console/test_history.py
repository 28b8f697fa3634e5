"""The console (DESIGN section 8): its JSON documents, its history, its safety.

The proxy serves in front of the fake Criteo over real sockets; the real-browser
tests are in test_console_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.console.history import History, RequestRecord, build_record
from proxy.exchange import Exchange
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from tests.conftest import StartProxy, assert_one_line_error, clean_env, raw_request, run_cli

RECORD_FIELDS = {
    "seq",
    "time",
    "profile",
    "method",
    "path",
    "status",
    "duration_ms",
    "upstream_ms",
    "retried",
    "rate_limit_wait_ms",
    "request_id",
    "criteo_trace_id",
    "proxy_error",
    "error_body",
}
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def requests_of(proxy: TestClient[Any, Any], query: str = "") -> list[dict[str, Any]]:
    resp = await proxy.get(f"/_proxy/requests{query}")
    assert resp.status == 200
    document = await resp.json()
    assert list(document) == ["requests"]
    records: list[dict[str, Any]] = document["requests"]
    return records


async def status_of(proxy: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await proxy.get("/_proxy/status")
    assert resp.status == 200
    document: dict[str, Any] = await resp.json()
    return document


def criteo_error(status: int, trace_id: str, detail: str = "no such campaign") -> web.Response:
    return web.json_response(
        {
            "errors": [
                {"traceId": trace_id, "type": "validation", "code": "not-found", "detail": detail}
            ]
        },
        status=status,
    )


# --- /_proxy/requests -----------------------------------------------------------------------


async def test_a_forwarded_request_is_recorded_with_every_field(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await proxy.get("/2025-10/advertisers/me", headers={"X-Request-Id": "rec-1"})
    assert resp.status == 200

    [record] = await requests_of(proxy)
    assert set(record) == RECORD_FIELDS
    assert record["seq"] == 1
    assert ISO_UTC.fullmatch(record["time"])
    assert record["profile"] == "default"
    assert record["method"] == "GET"
    assert record["path"] == "/2025-10/advertisers/me"
    assert record["status"] == 200
    assert record["duration_ms"] >= record["upstream_ms"] > 0
    assert record["retried"] is None
    assert record["rate_limit_wait_ms"] == 0
    assert record["request_id"] == "rec-1"
    assert record["criteo_trace_id"] is None
    assert record["proxy_error"] is None
    assert record["error_body"] is None


async def test_seq_grows_by_one_and_after_returns_only_newer_ones_oldest_first(
    proxy: TestClient[Any, Any],
) -> None:
    for i in range(5):
        assert (await proxy.get(f"/2025-10/echo/{i}")).status == 200
    records = await requests_of(proxy)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["path"] for r in records] == [f"/2025-10/echo/{i}" for i in range(5)]
    assert [r["seq"] for r in await requests_of(proxy, "?after=3")] == [4, 5]
    assert await requests_of(proxy, "?after=5") == []
    assert [r["seq"] for r in await requests_of(proxy, "?after=1&limit=2")] == [2, 3]


@pytest.mark.parametrize("query", ["?after=abc", "?after=-1", "?limit=1.5", "?after=" + "9" * 40])
async def test_a_bad_after_or_limit_is_a_400_in_the_envelope(
    proxy: TestClient[Any, Any], query: str
) -> None:
    resp = await proxy.get(f"/_proxy/requests{query}")
    assert resp.status == 400
    assert resp.headers["X-Criteo-Proxy-Error"] == "bad_request"
    (error,) = (await resp.json())["errors"]
    assert error["code"] == "bad_request"


async def test_a_401_retried_request_says_so(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    assert (await proxy.get("/2025-10/advertisers/me")).status == 200
    criteo.revoke_tokens()
    assert (await proxy.get("/2025-10/advertisers/me")).status == 200
    records = await requests_of(proxy)
    assert [r["retried"] for r in records] == [None, "401"]


async def test_a_paced_request_shows_its_wait(start_proxy: StartProxy, criteo: FakeCriteo) -> None:
    criteo.rate_limit, criteo.rate_window_seconds = 1, 1
    proxy = await start_proxy()
    first, second = await asyncio.gather(proxy.get("/2025-10/echo/a"), proxy.get("/2025-10/echo/b"))
    assert (first.status, second.status) == (200, 200)
    waits = sorted(r["rate_limit_wait_ms"] for r in await requests_of(proxy))
    assert waits[0] == 0
    assert waits[1] > 0  # the second waited for the first answer, then for the reset
    assert criteo.throttled == 0


async def test_a_429_replayed_after_the_reset_says_so(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    calls = 0

    async def spent_once(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls > 1:
            return web.json_response({"data": "ok"})
        throttled = criteo_error(429, "trace-429")
        throttled.headers.update(
            {
                "x-ratelimit-limit": "250",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": f"{time.time() + 0.2:.3f}",
            }
        )
        return throttled

    criteo.handlers["/2025-10/spent"] = spent_once
    resp = await proxy.get("/2025-10/spent")
    assert resp.status == 200
    assert calls == 2
    [record] = await requests_of(proxy)
    assert record["retried"] == "429"
    [api] = (await status_of(proxy))["profiles"][0]["rate_limits"]
    assert (api["seen_429"], api["retried_429"], api["refused"]) == (1, 1, 0)


async def test_a_criteo_error_keeps_its_trace_id_and_envelope(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    async def not_found(request: web.Request) -> web.Response:
        return criteo_error(404, "trace-404-abc")

    criteo.handlers["/2025-10/campaigns/1"] = not_found
    resp = await proxy.get("/2025-10/campaigns/1")
    assert resp.status == 404
    sent = await resp.read()

    [record] = await requests_of(proxy)
    assert record["criteo_trace_id"] == "trace-404-abc"
    assert record["error_body"] == sent.decode()
    assert json.loads(record["error_body"])["errors"][0]["code"] == "not-found"
    assert record["proxy_error"] is None


async def test_a_streamed_compressed_error_body_is_kept_readable(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    import gzip

    envelope = json.dumps({"errors": [{"traceId": "trace-gz", "code": "x"}]}).encode()

    async def gzipped(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=500,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(gzip.compress(envelope))
        await response.write_eof()
        return response

    criteo.handlers["/2025-10/gz"] = gzipped
    resp = await proxy.get("/2025-10/gz", headers={"Accept-Encoding": "gzip"})
    assert resp.status == 500
    [record] = await requests_of(proxy)
    assert record["criteo_trace_id"] == "trace-gz"
    assert record["error_body"] == envelope.decode()


async def test_error_bodies_are_not_kept_when_turned_off_nor_for_successes(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    async def bad(request: web.Request) -> web.Response:
        return criteo_error(400, "trace-400")

    criteo.handlers["/2025-10/bad"] = bad
    proxy = await start_proxy(console={"error_bodies": False})
    assert (await proxy.get("/2025-10/bad")).status == 400
    assert (await proxy.get("/2025-10/advertisers/me")).status == 200
    records = await requests_of(proxy)
    assert [r["error_body"] for r in records] == [None, None]
    assert records[0]["criteo_trace_id"] == "trace-400"  # the trace id is no body


async def test_secret_looking_query_values_are_masked_as_in_the_access_log(
    proxy: TestClient[Any, Any],
) -> None:
    await proxy.get("/2025-10/echo/x?access_token=abc123&api_key=k9&fields=name&code=c7")
    [record] = await requests_of(proxy)
    assert record["path"] == "/2025-10/echo/x?access_token=***&api_key=***&fields=name&code=***"


async def test_the_proxys_own_errors_are_recorded_with_their_code_and_envelope(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(security={"read_only": True})
    resp = await proxy.post("/2025-10/echo/x", data=b"{}")
    assert resp.status == 405
    [record] = await requests_of(proxy)
    assert record["proxy_error"] == "method_not_allowed"
    assert json.loads(record["error_body"])["errors"][0]["code"] == "method_not_allowed"
    assert criteo.requests == []


async def test_the_proxys_own_endpoints_are_not_recorded_unless_refused(
    proxy: TestClient[Any, Any],
) -> None:
    for path in ("/_proxy/health", "/_proxy/ready", "/_proxy/metrics", "/_proxy/status"):
        assert (await proxy.get(path)).status == 200
    assert (await proxy.get("/_proxy/nothing")).status == 404
    refused = await proxy.get("/_proxy/status", headers={"Origin": "https://evil.example"})
    assert refused.status == 403
    records = await requests_of(proxy)
    assert [(r["path"], r["proxy_error"]) for r in records] == [
        ("/_proxy/nothing", "not_found"),
        ("/_proxy/status", "origin_not_allowed"),
    ]


async def test_the_history_keeps_the_last_console_history_requests(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(console={"history": 3})
    for i in range(7):
        await proxy.get(f"/2025-10/echo/{i}")
    records = await requests_of(proxy)
    assert [r["seq"] for r in records] == [5, 6, 7]
    assert (await status_of(proxy))["console"]["last_seq"] == 7


def test_the_history_is_bounded_in_bytes_too() -> None:
    history = History(1000, max_bytes=20_000)
    exchange = Exchange("id", 0.0)
    exchange.error_body = b"x" * 8000
    for _ in range(10):
        history.append(
            build_record(
                history,
                profile="default",
                method="GET",
                raw_path="/2025-10/x",
                status=500,
                exchange=exchange,
                duration_seconds=0.001,
                keep_error_body=True,
                scrub=None,
            )
        )
    kept = history.after(0)
    assert 1 <= len(kept) <= 2
    assert sum(r.size_bytes for r in kept) <= 20_000
    assert kept[-1].seq == 10


def test_an_error_body_never_keeps_the_access_token_in_use() -> None:
    history = History(10)
    exchange = Exchange("id", 0.0)
    exchange.error_body = b'{"errors":[{"detail":"token eyJhbGciOi.abc.def is revoked"}]}'
    record: RequestRecord = build_record(
        history,
        profile="default",
        method="GET",
        raw_path="/x",
        status=401,
        exchange=exchange,
        duration_seconds=0.0,
        keep_error_body=True,
        scrub="eyJhbGciOi.abc.def",
    )
    assert record.error_body == '{"errors":[{"detail":"token *** is revoked"}]}'


async def test_error_bodies_of_oauth2_paths_are_never_kept(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await proxy.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "wrong-1"},
    )
    assert resp.status == 401
    [record] = await requests_of(proxy)
    assert record["path"] == "/oauth2/token"
    assert record["error_body"] is None


# --- /_proxy/status ---------------------------------------------------------------------------


async def test_status_shows_the_token_windows_and_versions_never_the_token(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    criteo.rate_limit = 100
    await proxy.get("/2025-10/advertisers/me")
    await proxy.get("/2024-07/advertisers/me")  # deprecated at the fake
    await proxy.get("/2023-01/advertisers/me")  # retired: 410

    status = await status_of(proxy)
    assert set(status) >= {"version", "uptime_seconds", "upstream", "profiles"}
    assert status["upstream"].startswith("http://127.0.0.1:")
    assert status["uptime_seconds"] >= 0
    [profile] = status["profiles"]
    assert set(profile) >= {"name", "listen", "token", "rate_limits", "versions"}
    assert profile["name"] == "default"
    assert profile["listen"] == f"http://127.0.0.1:{proxy.port}"
    token = profile["token"]
    assert set(token) >= {"grant_type", "client_id", "state", "expires_in_seconds", "last_error"}
    assert token["grant_type"] == "client_credentials"
    assert token["client_id"] == "demo-client"
    assert token["state"] == "valid"
    assert 0 < token["expires_in_seconds"] <= 900
    assert token["last_error"] is None
    [api] = profile["rate_limits"]
    assert set(api) >= {"bucket", "limit", "remaining", "reset_in_seconds", "waiting"}
    assert api["bucket"] == "api"
    assert api["limit"] == 100
    assert api["remaining"] == 97
    assert 0 <= api["reset_in_seconds"] <= 60
    assert api["waiting"] == 0
    versions = {v["version"]: v for v in profile["versions"]}
    assert set(versions) == {"2023-01", "2024-07", "2025-10"}
    for entry in versions.values():
        assert set(entry) >= {"version", "requests", "deprecated", "sunset"}
        assert entry["requests"] == 1
    assert versions["2024-07"]["deprecated"] is True
    assert versions["2024-07"]["sunset"] == "Thu, 31 Jul 2025 00:00:00 GMT"
    assert versions["2025-10"]["deprecated"] is False
    assert versions["2025-10"]["sunset"] is None
    assert versions["2023-01"]["retired"] is True
    for token in criteo.issued:
        assert token not in json.dumps(status)


async def test_status_says_backing_off_with_the_endpoints_words_and_no_secret(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(credentials={"client_secret": "wrong-secret-77"})
    assert (await proxy.get("/2025-10/advertisers/me")).status == 502
    token = (await status_of(proxy))["profiles"][0]["token"]
    assert token["state"] == "backing_off"
    assert token["expires_in_seconds"] is None
    assert "invalid_client" in token["last_error"]
    assert token["backoff_seconds"] > 0
    assert "wrong-secret-77" not in json.dumps(token)


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

    criteo.handlers["/2025-10/echo-auth"] = echo_auth
    await proxy.get("/2025-10/advertisers/me?client_secret=" + DEMO_CLIENT_SECRET)
    await proxy.get("/2025-10/echo-auth")
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
    await proxy.get("/2025-10/echo/x")
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
    forwarded = await proxy.get("/2025-10/echo/x", headers={"Cookie": session})
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


# --- criteo-proxy status ----------------------------------------------------------------------


@pytest.fixture
async def keyed_cli_proxy(criteo_url: str, start_cli_server: Any, tmp_path: Any) -> tuple[Any, Any]:
    """The installed proxy, with inbound key k-status-1, and its config file."""
    config = tmp_path / "proxy.yaml"
    config.write_text(
        json.dumps({"upstream": {"url": criteo_url}, "security": {"api_keys": ["k-status-1"]}})
    )
    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
    return await start_cli_server("--config", str(config), "--port", "0", env=env), config


async def test_status_command_prints_tables_from_the_running_proxy(
    keyed_cli_proxy: tuple[Any, Any],
) -> None:
    server, config = keyed_cli_proxy
    port = server.url.rsplit(":", 1)[1]
    async with aiohttp.ClientSession(headers={"X-Proxy-Key": "k-status-1"}) as http:
        async with http.get(server.url + "/2025-10/advertisers/me?api_key=hidden") as resp:
            assert resp.status == 200
        async with http.get(server.url + "/2025-10/nothing") as resp:
            assert resp.status == 404

    # No credentials needed: it asks the proxy (with the config's key), not Criteo.
    result = await run_cli("status", "--config", str(config), "--port", port, env=clean_env())
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"profile default on {server.url}" in out
    assert re.search(r"^valid\s+client_credentials\s+demo-client\s+\d+", out, re.MULTILINE)
    assert re.search(r"GET\s+/2025-10/advertisers/me\?api_key=\*\*\*\s+200", out)
    assert re.search(r"GET\s+/2025-10/nothing\s+404", out)
    assert "hidden" not in out
    assert "k-status-1" not in out + result.stderr

    as_json = await run_cli(
        "status", "--config", str(config), "--url", server.url, "--json", env=clean_env()
    )
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["profiles"][0]["token"]["state"] == "valid"
    assert await server.stop() == 0


async def test_status_command_against_nothing_is_one_line_and_exit_1() -> None:
    port = str(free_port())
    result = await run_cli("status", "--port", port, env=clean_env())
    line = assert_one_line_error(result, 1, f"127.0.0.1:{port}")
    assert "nothing answers" in line
    unix = await run_cli("status", "--url", "unix:/nonexistent/criteo.sock", env=clean_env())
    assert_one_line_error(unix, 1, "unix:/nonexistent/criteo.sock")


async def test_status_command_says_when_the_key_is_missing(
    keyed_cli_proxy: tuple[Any, Any],
) -> None:
    server, _ = keyed_cli_proxy
    result = await run_cli("status", "--url", server.url, env=clean_env())
    assert_one_line_error(result, 1, "401", "proxy_key_required")
    assert await server.stop() == 0
