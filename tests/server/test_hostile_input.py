"""Safety guards (DESIGN section 4), through a real proxy in front of the fake Criteo.

Each test sends the attack over a real socket and asserts both the refusal the
client got and that nothing reached the upstream.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy.config.addresses import parse_host
from proxy.config.loader import parse_config
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from proxy.forwarding.forwarder import build_upstream_url
from proxy.forwarding.headers import HOP_BY_HOP, build_upstream_headers
from proxy.server.app import build_app
from proxy.server.guards import GuardPolicy, is_host_allowed, parse_request_target
from proxy.server.listeners import ProxyRunner, build_server_options
from tests.conftest import StartProxy, raw_request


def policy(**security: Any) -> GuardPolicy:
    raw = {"security": security, "credentials": {"client_id": "a", "client_secret": "b"}}
    return GuardPolicy.from_config(parse_config(raw, environ={}).security)


def assert_proxy_error(body: dict[str, Any], code: str) -> None:
    (error,) = body["errors"]
    assert error["type"] == "proxy"
    assert error["code"] == code


# --- Host allow-list (DNS rebinding) ----------------------------------------------------


def test_host_verdicts_are_remembered_within_a_bound_and_stay_right() -> None:
    """Each Host is parsed once; a client inventing Hosts cannot grow the memory of them."""
    guard = policy(allowed_hosts=["localhost"])
    assert is_host_allowed(guard, "localhost:8080")
    for n in range(500):
        assert not is_host_allowed(guard, f"evil{n}.example")
    assert len(guard.host_verdicts) <= 64
    assert is_host_allowed(guard, "localhost:8080")
    assert is_host_allowed(guard, "LOCALHOST")
    assert not is_host_allowed(guard, "evil1.example")
    assert not is_host_allowed(guard, "xn--a.example")  # undecodable: refused, not raised


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "localhost.evil.example"])
async def test_foreign_host_header_is_refused_before_anything_is_forwarded(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, host: str
) -> None:
    resp = await proxy.get("/2025-10/advertisers/me", headers={"Host": host})
    assert resp.status == 403
    assert resp.headers["X-Criteo-Proxy-Error"] == "host_not_allowed"
    assert_proxy_error(await resp.json(), "host_not_allowed")
    assert criteo.requests == []


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8080", "127.0.0.1:1", "[::1]:8080"])
async def test_default_loopback_host_names_are_allowed_on_any_port(
    proxy: TestClient[Any, Any], host: str
) -> None:
    resp = await proxy.get("/2025-10/advertisers/me", headers={"Host": host})
    assert resp.status == 200


async def test_reserved_paths_are_guarded_too(proxy: TestClient[Any, Any]) -> None:
    resp = await proxy.get("/_proxy/ready", headers={"Host": "evil.example"})
    assert resp.status == 403
    assert resp.headers["X-Criteo-Proxy-Error"] == "host_not_allowed"


def test_host_entries_with_a_port_allow_only_that_port() -> None:
    rules = policy(allowed_hosts=["criteo-proxy:8080", "localhost"])
    assert is_host_allowed(rules, "criteo-proxy:8080")
    assert not is_host_allowed(rules, "criteo-proxy:9090")
    assert not is_host_allowed(rules, "criteo-proxy")
    assert is_host_allowed(rules, "localhost:1234")


# --- absolute-form targets (open proxy) ---------------------------------------------------


async def test_absolute_target_for_another_host_never_reaches_it(
    start_proxy: StartProxy, criteo: FakeCriteo, aiohttp_server: Any
) -> None:
    """A second local server stands for "another host": it must receive nothing."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(text="should never be reached")

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", record)
    other_server: TestServer = await aiohttp_server(other)
    proxy = await start_proxy()
    target = f"http://127.0.0.2:{other_server.port}/steal"
    resp = await raw_request(
        proxy.port, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.2\r\n\r\n".encode()
    )
    assert resp.status == 400
    assert resp.headers["x-criteo-proxy-error"] == "absolute_uri_not_allowed"
    assert seen == []
    assert criteo.requests == []


async def test_absolute_target_naming_the_proxy_itself_is_forwarded_as_a_path(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await raw_request(
        proxy.port,
        f"GET http://localhost:{proxy.port}/2025-10/echo/a?x=%2F HTTP/1.1\r\n"
        f"Host: localhost:{proxy.port}\r\n\r\n".encode(),
    )
    assert resp.status == 200
    assert criteo.last_request.raw_path == "/2025-10/echo/a?x=%2F"


@pytest.mark.parametrize("target", ["http://xn--a.example/x", "http://xn--a", "https://xn--/"])
async def test_absolute_target_with_an_undecodable_host_is_400_not_a_hang(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp itself fails on such a target before any handler runs (see ProxyRunner)."""
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n\r\n"
    async with asyncio.timeout(5):
        resp = await raw_request(proxy.port, request.encode())
    assert resp.status == 400
    assert resp.headers["x-criteo-proxy-error"] == "absolute_uri_not_allowed"
    assert criteo.requests == []
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize(
    ("target_authority", "host_header"),
    [
        ("127.0.0.1:{other}", "127.0.0.1:{other}"),  # an allowed name, another local service
        ("localhost:{other}", "localhost:{port}"),  # and disagreeing with Host
        ("localhost", "localhost"),  # no port: port 80, not the proxy's
        ("localhost:{port}", "127.0.0.1:{other}"),  # the authority disagrees with Host
        ("localhost:{port}", "[::1]:{port}"),
    ],
)
async def test_absolute_target_on_another_port_or_disagreeing_with_host_is_refused(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, target_authority: str, host_header: str
) -> None:
    """ "The proxy itself" is an allowed host name on the port the proxy serves on (DESIGN 4)."""
    ports = {"port": proxy.port, "other": 9999 if proxy.port != 9999 else 9998}
    authority, host = target_authority.format(**ports), host_header.format(**ports)
    request = f"GET http://{authority}/2025-10/echo/a HTTP/1.1\r\nHost: {host}\r\n\r\n"
    resp = await raw_request(proxy.port, request.encode())
    assert resp.status == 400, resp.body
    assert resp.headers["x-criteo-proxy-error"] == "absolute_uri_not_allowed"
    assert criteo.requests == []


async def test_absolute_target_naming_the_proxy_by_another_allowed_name_is_forwarded(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await raw_request(
        proxy.port,
        f"GET http://127.0.0.1:{proxy.port}/2025-10/echo/b HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{proxy.port}\r\n\r\n".encode(),
    )
    assert resp.status == 200
    assert criteo.last_request.raw_path == "/2025-10/echo/b"


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
    resp = await proxy.get("/2025-10/advertisers/me", headers=headers)
    assert resp.status == 403
    assert resp.headers["X-Criteo-Proxy-Error"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert criteo.requests == []


@pytest.mark.parametrize(
    "origin", ["https://xn--a.example", "http://xn--", "http://[::1", "http://a\u00e9\u200b.b"]
)
async def test_an_origin_that_cannot_be_parsed_is_refused_in_the_envelope(
    start_proxy: StartProxy, criteo: FakeCriteo, origin: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await start_proxy(security={"allowed_origins": ["http://localhost:3000"]})
    resp = await proxy.get("/2025-10/echo/x", headers={"Origin": origin})
    assert resp.status == 403
    assert_proxy_error(await resp.json(), "origin_not_allowed")
    assert criteo.requests == []
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("fetch_site", ["none", "same-origin"])
async def test_non_cross_site_fetch_metadata_is_fine(
    proxy: TestClient[Any, Any], fetch_site: str
) -> None:
    resp = await proxy.get("/2025-10/advertisers/me", headers={"Sec-Fetch-Site": fetch_site})
    assert resp.status == 200


async def test_allowed_origin_gets_cors_headers_on_answers_and_errors(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(
        security={"allowed_origins": ["http://LOCALHOST:3000"], "read_only": True}
    )
    origin = {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}
    ok = await proxy.get("/2025-10/advertisers/me", headers=origin)
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "X-Request-Id" in ok.headers["Access-Control-Expose-Headers"]
    refused = await proxy.post("/2025-10/echo/x", headers=origin)
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

    criteo.handlers["/2025-10/report.csv"] = report
    proxy = await start_proxy(security={"allowed_origins": ["http://localhost:3000"]})
    origin = {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}
    resp = await proxy.get("/2025-10/report.csv", headers=origin)
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
        "/2025-10/advertisers/me",
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


# --- read-only and path rules -----------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_read_only_refuses_methods_that_change_things(
    start_proxy: StartProxy, criteo: FakeCriteo, method: str
) -> None:
    proxy = await start_proxy(security={"read_only": True})
    resp = await proxy.request(method, "/2025-10/echo/x", data=b"{}")
    assert resp.status == 405
    assert resp.headers["X-Criteo-Proxy-Error"] == "method_not_allowed"
    assert criteo.requests == []
    assert (await proxy.get("/2025-10/advertisers/me")).status == 200


async def test_allow_and_deny_paths_narrow_what_is_forwarded(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(
        security={"allow_paths": ["^/2025-10/"], "deny_paths": ["/echo/secret"]}
    )
    assert (await proxy.get("/2025-10/advertisers/me")).status == 200
    outside = await proxy.get("/2024-04/advertisers/me")
    assert outside.status == 403
    assert outside.headers["X-Criteo-Proxy-Error"] == "path_not_allowed"
    denied = await proxy.get("/2025-10/echo/secret")
    assert denied.status == 403
    # percent-encoding does not smuggle a denied path past the rule
    sneaky = await raw_request(
        proxy.port, b"GET /2025-10/echo/%73ecret HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    assert sneaky.status == 403
    assert [r.raw_path for r in criteo.requests] == ["/2025-10/advertisers/me"]
    assert (await proxy.get("/_proxy/health")).status == 200


async def test_oauth_paths_never_carry_the_proxys_token(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await proxy.get("/oauth2/anything")
    assert resp.status == 401  # the fake demands a token; the proxy added none
    assert criteo.requests == []


# --- inbound keys -----------------------------------------------------------------------


async def test_api_keys_are_required_and_never_forwarded(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(security={"api_keys": ["key-one", "key-two"]})
    missing = await proxy.get("/2025-10/advertisers/me")
    assert missing.status == 401
    assert missing.headers["X-Criteo-Proxy-Error"] == "proxy_key_required"
    wrong = await proxy.get("/2025-10/advertisers/me", headers={"X-Proxy-Key": "key-on"})
    assert wrong.status == 401
    assert criteo.requests == []
    ok = await proxy.get("/2025-10/advertisers/me", headers={"X-Proxy-Key": "key-two"})
    assert ok.status == 200
    assert "X-Proxy-Key" not in criteo.last_request.headers
    assert (await proxy.get("/_proxy/health")).status == 200
    assert (await proxy.get("/_proxy/ready")).status == 401
    body = await missing.text()
    assert "key-one" not in body
    assert "key-two" not in body


# --- Unix socket ------------------------------------------------------------------------


def short_socket_path(tmp_path: Path) -> str:
    # AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    return str(Path(os.environ.get("TMPDIR", "/tmp")) / f"cp-{os.getpid()}-{id(tmp_path)}.sock")


async def test_unix_socket_is_owner_only_and_serves(
    start_cli_server: Any, criteo_url: str, tmp_path: Path
) -> None:
    from tests.conftest import clean_env

    path = short_socket_path(tmp_path)
    # a stale socket file from a crashed run is replaced
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    config = tmp_path / "c.yaml"
    config.write_text(f"listen:\n  unix_socket: {path}\nupstream:\n  url: {criteo_url}\n")
    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
    server = await start_cli_server("--config", str(config), env=env)
    try:
        assert server.url == f"unix:{path}"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        connector = aiohttp.UnixConnector(path=path)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get("http://localhost/2025-10/advertisers/me") as resp,
        ):
            assert resp.status == 200
    finally:
        assert await server.stop() == 0
        Path(path).unlink(missing_ok=True)


async def test_unix_socket_path_that_is_a_regular_file_is_an_error(
    criteo_url: str, tmp_path: Path
) -> None:
    from tests.conftest import clean_env, run_cli

    path = short_socket_path(tmp_path)
    Path(path).write_text("not a socket")
    try:
        config = tmp_path / "c.yaml"
        config.write_text(f"listen:\n  unix_socket: {path}\nupstream:\n  url: {criteo_url}\n")
        env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
        result = await run_cli("--config", str(config), env=env)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"criteo-proxy: listen.unix_socket: {path} exists and is not a socket; "
            "remove it or pick another path"
        ]
        assert Path(path).read_text() == "not a socket"  # nothing lost
    finally:
        os.unlink(path)


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

    criteo.handlers["/2025-10/endless"] = endless
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET /2025-10/endless HTTP/1.1\r\nHost: localhost\r\n\r\n")
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

    criteo.handlers["/2025-10/upload"] = slurp
    _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        b"POST /2025-10/upload HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Length: 50000000\r\n\r\n" + b"y" * 20_000_000
    )
    await writer.drain()
    writer.close()
    await asyncio.wait_for(upstream_saw_break.wait(), timeout=10)
    assert (await proxy.get("/_proxy/health")).status == 200


# --- pure builders, with hypothesis -------------------------------------------------------

_token_chars = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_path = st.text(alphabet=_token_chars, max_size=60).map(lambda s: "/" + s.replace("#", ""))


@given(path=_path)
def test_origin_form_targets_are_forwarded_unchanged_to_the_upstream_host(path: str) -> None:
    rules = policy()
    forwarded = parse_request_target(rules, path)
    assert forwarded == path
    url = build_upstream_url("https://api.criteo.com", forwarded)
    assert url.host == "api.criteo.com"
    assert url.raw_path_qs == path or url.raw_path_qs == path.rstrip("?")


@given(host=st.from_regex(r"[a-z0-9.-]{1,30}", fullmatch=True), rest=_path)
def test_absolute_targets_for_foreign_hosts_are_always_refused(host: str, rest: str) -> None:
    from proxy.errors import ProxyError

    rules = policy()
    if parse_host(host) in {("localhost", None), ("127.0.0.1", None)}:
        return
    with pytest.raises(ProxyError) as caught:
        parse_request_target(rules, f"http://{host}{rest}")
    assert caught.value.code == "absolute_uri_not_allowed"


_header_name = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
_header_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@given(headers=st.lists(st.tuples(_header_name, _header_value), max_size=15))
def test_upstream_headers_never_carry_hop_by_hop_or_client_auth(
    headers: list[tuple[str, str]],
) -> None:
    incoming = CIMultiDict(headers)
    built = build_upstream_headers(incoming, token="T", request_id="rid")
    listed = {n.strip().lower() for v in incoming.getall("Connection", ()) for n in v.split(",")}
    for name in built:
        assert name.lower() not in HOP_BY_HOP
        assert name.lower() not in listed or name.lower() in ("authorization", "x-request-id")
        assert name.lower() not in ("host", "x-proxy-key", "expect")
    assert built.getall("Authorization") == ["Bearer T"]
    kept = [
        (k, v)
        for k, v in headers
        if k.lower()
        not in HOP_BY_HOP
        | listed
        | {"host", "authorization", "expect", "x-proxy-key", "x-request-id", "http2-settings"}
    ]
    assert [
        (k, v) for k, v in built.items() if k.lower() not in ("authorization", "x-request-id")
    ] == kept


async def test_binding_beyond_loopback_without_keys_warns_loudly(
    start_cli_server: Any, criteo_url: str
) -> None:
    """0.0.0.0 without security.api_keys: the start says the token is exposed (no traffic sent)."""
    from tests.conftest import clean_env

    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
    server = await start_cli_server(
        "--host", "0.0.0.0", "--port", "0", "--upstream", criteo_url, env=env
    )
    assert await server.stop() == 0
    warnings = [line for line in server.stderr_lines if "without security.api_keys" in line]
    assert len(warnings) == 1
    assert "WARNING" in warnings[0]
    assert "127.0.0.1:8080:8080" in warnings[0]


async def test_loopback_bind_does_not_warn(start_cli_server: Any, criteo_url: str) -> None:
    from tests.conftest import clean_env

    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
    server = await start_cli_server("--port", "0", "--upstream", criteo_url, env=env)
    assert await server.stop() == 0
    assert not any("without security.api_keys" in line for line in server.stderr_lines)


async def test_an_encoded_reserved_path_is_not_the_health_route_and_needs_the_key(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """/_proxy%2Fhealth is routed to the forwarder, so it must not inherit health's exemption."""
    proxy = await start_proxy(security={"api_keys": ["k1"]})
    resp = await raw_request(
        proxy.port,
        b"POST /_proxy%2Fhealth?x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    )
    assert resp.status == 401
    assert resp.headers["x-criteo-proxy-error"] == "proxy_key_required"
    assert criteo.requests == []


@pytest.mark.parametrize(
    "target",
    [
        "/_proxy%2F..%2F2025-10%2Fstatistics%2Freport",
        "/2025-10/echo/%2e%2e/%2e%2e/2025-10/statistics/report",
        "/2025-10/echo/../statistics/report",
        "/2025-10/echo%2F..%2Fstatistics/report",
    ],
)
async def test_encoded_or_dot_segment_paths_cannot_slip_past_path_rules(
    start_proxy: StartProxy, criteo: FakeCriteo, target: str
) -> None:
    proxy = await start_proxy(
        security={"allow_paths": ["^/2025-10/echo/", "^/_proxy"], "deny_paths": ["statistics"]}
    )
    resp = await raw_request(
        proxy.port, f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    )
    assert resp.status == 403
    assert resp.headers["x-criteo-proxy-error"] == "path_not_allowed"
    assert criteo.requests == []
    assert (await proxy.get("/2025-10/echo/plain")).status == 200


@pytest.mark.parametrize(
    "target",
    [
        "/2025-10//statistics/report",  # an empty segment, which servers may collapse
        "//2025-10/statistics/report",
        "/2025-10/statistics;v=1/report",  # a path parameter (matrix URI)
        "/2025-10/%2573tatistics/report",  # %25: decoded twice along the way, it is an 's'
        "/2025-10/Statistics/report",  # Criteo's routing may not care about case
    ],
)
async def test_forms_criteo_may_normalise_cannot_slip_past_anchored_deny_rules(
    start_proxy: StartProxy, criteo: FakeCriteo, target: str
) -> None:
    proxy = await start_proxy(security={"deny_paths": ["^/2025-10/statistics/"]})
    resp = await raw_request(
        proxy.port, f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    )
    assert resp.status == 403
    assert resp.headers["x-criteo-proxy-error"] == "path_not_allowed"
    assert criteo.requests == []
    assert (await proxy.get("/2025-10/echo/plain;")).status == 403
    assert (await proxy.get("/2025-10/echo/plain")).status == 200


async def test_without_path_rules_unusual_paths_are_forwarded_as_they_are(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await raw_request(
        proxy.port, b"GET /2025-10/echo//a;b/%2573 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    assert resp.status == 200
    assert criteo.last_request.raw_path == "/2025-10/echo//a;b/%2573"


async def test_expect_100_continue_on_a_reserved_path_waits_for_the_guards(
    start_proxy: StartProxy,
) -> None:
    """No 100 Continue before the inbound key is checked, on /_proxy/* as everywhere."""
    proxy = await start_proxy(security={"api_keys": ["k1"]})
    resp = await raw_request(
        proxy.port,
        b"POST /_proxy/x HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
        b"Content-Length: 5\r\n\r\n",
    )
    assert resp.status == 401  # the first status line is the refusal, not 100 Continue
    assert resp.headers["x-criteo-proxy-error"] == "proxy_key_required"


async def test_an_unknown_expect_from_a_foreign_host_is_refused_by_the_host_guard(
    proxy: TestClient[Any, Any],
) -> None:
    resp = await raw_request(
        proxy.port,
        b"POST /2025-10/echo/x HTTP/1.1\r\nHost: evil.example\r\nExpect: something\r\n"
        b"Content-Length: 2\r\n\r\nhi",
    )
    assert resp.status == 403
    assert resp.headers["x-criteo-proxy-error"] == "host_not_allowed"


async def test_aiohttps_own_417_to_an_allowed_origin_carries_the_cors_headers(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """An answer aiohttp makes itself (417 to an unknown Expect) is a browser's answer too."""
    proxy = await start_proxy(security={"allowed_origins": ["http://localhost:3000"]})
    resp = await raw_request(
        proxy.port,
        b"POST /2025-10/echo/x HTTP/1.1\r\nHost: localhost\r\nExpect: something\r\n"
        b"Origin: http://localhost:3000\r\nSec-Fetch-Site: same-site\r\n"
        b"Content-Length: 2\r\n\r\nhi",
    )
    assert resp.status == 417
    assert resp.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert criteo.requests == []


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
    path=st.sampled_from([b"/2025-10/echo/x", b"/_proxy/ready", b"/_proxy/health", b"http://x/"])
    | st.binary(max_size=40).map(
        lambda b: b"/2025-10/echo/" + b.replace(b" ", b"").replace(b"\r", b"").replace(b"\n", b"")
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
