"""Guards on Host and the request target (DESIGN 4): no DNS rebinding, no open proxy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from proxy.config.addresses import parse_host
from proxy.config.loader import parse_config
from proxy.fakes.criteo import FakeCriteo
from proxy.forwarding.forwarder import build_upstream_url
from proxy.server.guards import GuardPolicy, is_host_allowed, parse_request_target
from tests.conftest import StartProxy, raw_request
from tests.server.conftest import assert_proxy_error


def policy(**security: Any) -> GuardPolicy:
    raw = {"security": security, "credentials": {"client_id": "a", "client_secret": "b"}}
    return GuardPolicy.from_config(parse_config(raw, environ={}).security)


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
    resp = await proxy.get("/2026-07/advertisers/me", headers={"Host": host})
    assert resp.status == 403
    assert resp.headers["X-Criteo-Proxy-Error"] == "host_not_allowed"
    assert_proxy_error(await resp.json(), "host_not_allowed")
    assert criteo.requests == []


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8080", "127.0.0.1:1", "[::1]:8080"])
async def test_default_loopback_host_names_are_allowed_on_any_port(
    proxy: TestClient[Any, Any], host: str
) -> None:
    resp = await proxy.get("/2026-07/advertisers/me", headers={"Host": host})
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


async def test_an_unknown_expect_from_a_foreign_host_is_refused_by_the_host_guard(
    proxy: TestClient[Any, Any],
) -> None:
    resp = await raw_request(
        proxy.port,
        b"POST /2026-07/echo/x HTTP/1.1\r\nHost: evil.example\r\nExpect: something\r\n"
        b"Content-Length: 2\r\n\r\nhi",
    )
    assert resp.status == 403
    assert resp.headers["x-criteo-proxy-error"] == "host_not_allowed"


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
        f"GET http://localhost:{proxy.port}/2026-07/echo/a?x=%2F HTTP/1.1\r\n"
        f"Host: localhost:{proxy.port}\r\n\r\n".encode(),
    )
    assert resp.status == 200
    assert criteo.last_request.raw_path == "/2026-07/echo/a?x=%2F"


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
    request = f"GET http://{authority}/2026-07/echo/a HTTP/1.1\r\nHost: {host}\r\n\r\n"
    resp = await raw_request(proxy.port, request.encode())
    assert resp.status == 400, resp.body
    assert resp.headers["x-criteo-proxy-error"] == "absolute_uri_not_allowed"
    assert criteo.requests == []


async def test_absolute_target_naming_the_proxy_by_another_allowed_name_is_forwarded(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await raw_request(
        proxy.port,
        f"GET http://127.0.0.1:{proxy.port}/2026-07/echo/b HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{proxy.port}\r\n\r\n".encode(),
    )
    assert resp.status == 200
    assert criteo.last_request.raw_path == "/2026-07/echo/b"


# --- pure target parsing, with hypothesis -----------------------------------------------


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
