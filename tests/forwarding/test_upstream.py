"""The upstream leg: HTTP_PROXY and NO_PROXY from the environment, upstream.ca_file."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import StartProxy
from tests.forwarding.conftest import (
    HOP_BY_HOP,
    ServerFactory,
    assert_proxy_error,
    assert_proxy_token,
)

# --- HTTP_PROXY / NO_PROXY ------------------------------------------------------------


@pytest.fixture
async def forward_proxy(aiohttp_server: ServerFactory) -> tuple[str, list[str]]:
    """A tiny HTTP forward proxy on loopback: records absolute-form targets, forwards them."""
    targets: list[str] = []
    skip = {*HOP_BY_HOP, "host", "content-length"}

    async def forward(request: web.Request) -> web.Response:
        targets.append(request.raw_path)
        target = aiohttp.client.URL(request.raw_path, encoded=True)
        assert target.host == "127.0.0.1", target  # loopback only, ever
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        body = await request.read()
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(request.method, target, headers=headers, data=body or None) as up,
        ):
            payload = await up.read()
            kept = {k: v for k, v in up.headers.items() if k.lower() not in skip}
            return web.Response(status=up.status, body=payload, headers=kept)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), targets


def clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


async def test_http_proxy_from_the_environment_carries_the_upstream_leg(
    monkeypatch: pytest.MonkeyPatch,
    forward_proxy: tuple[str, list[str]],
    start_proxy: StartProxy,
    criteo: FakeCriteo,
    criteo_url: str,
) -> None:
    proxy_url, targets = forward_proxy
    clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    proxy = await start_proxy()
    resp = await proxy.get("/2026-07/echo/via?a=1")
    assert resp.status == 200
    assert (await resp.json())["rawPath"] == "/2026-07/echo/via?a=1"
    assert f"{criteo_url}/2026-07/echo/via?a=1" in targets
    assert f"{criteo_url}/oauth2/token" in targets  # the token leg goes through it too
    assert_proxy_token(criteo)


async def test_no_proxy_exempts_the_upstream_from_http_proxy(
    monkeypatch: pytest.MonkeyPatch,
    forward_proxy: tuple[str, list[str]],
    start_proxy: StartProxy,
    criteo: FakeCriteo,
) -> None:
    proxy_url, targets = forward_proxy
    clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    proxy = await start_proxy()
    resp = await proxy.get("/2026-07/echo/direct")
    assert resp.status == 200
    assert criteo.last_request.raw_path == "/2026-07/echo/direct"
    assert targets == []


# --- upstream.ca_file -----------------------------------------------------------------


@pytest.fixture
async def tls_criteo(
    aiohttp_server: ServerFactory, criteo: FakeCriteo, tmp_path: Path
) -> tuple[str, str]:
    """The same fake over TLS with a private CA; returns (https url, CA pem path)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server = await aiohttp_server(criteo.build_app(), ssl=context)
    return f"https://127.0.0.1:{server.port}", str(ca_path)


async def test_ca_file_lets_the_proxy_trust_a_private_ca(
    tls_criteo: tuple[str, str], start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    url, ca_path = tls_criteo
    proxy = await start_proxy(upstream={"url": url, "ca_file": ca_path})
    resp = await proxy.get("/2026-07/advertisers/me")
    assert resp.status == 200
    assert criteo.last_request.raw_path == "/2026-07/advertisers/me"
    assert_proxy_token(criteo)


async def test_untrusted_upstream_certificate_fails_the_token_fetch_first(
    tls_criteo: tuple[str, str], start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """The token (from {url}/oauth2/token, same host) is fetched before the call is sent,
    so an untrusted certificate shows as token_endpoint_unavailable (§1: unreachable)."""
    url, _ = tls_criteo
    proxy = await start_proxy(upstream={"url": url})
    resp = await proxy.get("/2026-07/advertisers/me")
    body = await resp.read()
    assert_proxy_error(resp.status, resp.headers, body, 502, "token_endpoint_unavailable")
    assert criteo.token_requests == []
    assert criteo.requests == []


async def test_untrusted_api_certificate_is_502_upstream_unavailable(
    tls_criteo: tuple[str, str], start_proxy: StartProxy, criteo: FakeCriteo, criteo_url: str
) -> None:
    url, _ = tls_criteo
    proxy = await start_proxy(upstream={"url": url, "token_url": f"{criteo_url}/oauth2/token"})
    resp = await proxy.get("/2026-07/advertisers/me")
    assert_proxy_error(resp.status, resp.headers, await resp.read(), 502, "upstream_unavailable")
    assert criteo.requests == []
