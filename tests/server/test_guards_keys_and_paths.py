"""Guards on keys, methods and paths (DESIGN 4): inbound keys, read-only, path rules."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy.fakes.criteo import FakeCriteo
from proxy.forwarding.headers import HOP_BY_HOP, build_upstream_headers
from tests.conftest import StartProxy, raw_request

# --- read-only and path rules -----------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_read_only_refuses_methods_that_change_things(
    start_proxy: StartProxy, criteo: FakeCriteo, method: str
) -> None:
    proxy = await start_proxy(security={"read_only": True})
    resp = await proxy.request(method, "/2026-07/echo/x", data=b"{}")
    assert resp.status == 405
    assert resp.headers["X-Criteo-Proxy-Error"] == "method_not_allowed"
    assert criteo.requests == []
    assert (await proxy.get("/2026-07/advertisers/me")).status == 200


async def test_allow_and_deny_paths_narrow_what_is_forwarded(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(
        security={"allow_paths": ["^/2026-07/"], "deny_paths": ["/echo/secret"]}
    )
    assert (await proxy.get("/2026-07/advertisers/me")).status == 200
    outside = await proxy.get("/2024-04/advertisers/me")
    assert outside.status == 403
    assert outside.headers["X-Criteo-Proxy-Error"] == "path_not_allowed"
    denied = await proxy.get("/2026-07/echo/secret")
    assert denied.status == 403
    # percent-encoding does not smuggle a denied path past the rule
    sneaky = await raw_request(
        proxy.port, b"GET /2026-07/echo/%73ecret HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    assert sneaky.status == 403
    assert [r.raw_path for r in criteo.requests] == ["/2026-07/advertisers/me"]
    assert (await proxy.get("/_proxy/health")).status == 200


async def test_oauth_paths_never_carry_the_proxys_token(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await proxy.get("/oauth2/anything")
    assert resp.status == 401  # the fake demands a token; the proxy added none
    assert criteo.requests == []


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
        "/_proxy%2F..%2F2026-07%2Fstatistics%2Freport",
        "/2026-07/echo/%2e%2e/%2e%2e/2026-07/statistics/report",
        "/2026-07/echo/../statistics/report",
        "/2026-07/echo%2F..%2Fstatistics/report",
    ],
)
async def test_encoded_or_dot_segment_paths_cannot_slip_past_path_rules(
    start_proxy: StartProxy, criteo: FakeCriteo, target: str
) -> None:
    proxy = await start_proxy(
        security={"allow_paths": ["^/2026-07/echo/", "^/_proxy"], "deny_paths": ["statistics"]}
    )
    resp = await raw_request(
        proxy.port, f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    )
    assert resp.status == 403
    assert resp.headers["x-criteo-proxy-error"] == "path_not_allowed"
    assert criteo.requests == []
    assert (await proxy.get("/2026-07/echo/plain")).status == 200


@pytest.mark.parametrize(
    "target",
    [
        "/2026-07//statistics/report",  # an empty segment, which servers may collapse
        "//2026-07/statistics/report",
        "/2026-07/statistics;v=1/report",  # a path parameter (matrix URI)
        "/2026-07/%2573tatistics/report",  # %25: decoded twice along the way, it is an 's'
        "/2026-07/Statistics/report",  # Criteo's routing may not care about case
    ],
)
async def test_forms_criteo_may_normalise_cannot_slip_past_anchored_deny_rules(
    start_proxy: StartProxy, criteo: FakeCriteo, target: str
) -> None:
    proxy = await start_proxy(security={"deny_paths": ["^/2026-07/statistics/"]})
    resp = await raw_request(
        proxy.port, f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    )
    assert resp.status == 403
    assert resp.headers["x-criteo-proxy-error"] == "path_not_allowed"
    assert criteo.requests == []
    assert (await proxy.get("/2026-07/echo/plain;")).status == 403
    assert (await proxy.get("/2026-07/echo/plain")).status == 200


async def test_without_path_rules_unusual_paths_are_forwarded_as_they_are(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await raw_request(
        proxy.port, b"GET /2026-07/echo//a;b/%2573 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    assert resp.status == 200
    assert criteo.last_request.raw_path == "/2026-07/echo//a;b/%2573"


# --- inbound keys -----------------------------------------------------------------------


async def test_api_keys_are_required_and_never_forwarded(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(security={"api_keys": ["key-one", "key-two"]})
    missing = await proxy.get("/2026-07/advertisers/me")
    assert missing.status == 401
    assert missing.headers["X-Criteo-Proxy-Error"] == "proxy_key_required"
    wrong = await proxy.get("/2026-07/advertisers/me", headers={"X-Proxy-Key": "key-on"})
    assert wrong.status == 401
    assert criteo.requests == []
    ok = await proxy.get("/2026-07/advertisers/me", headers={"X-Proxy-Key": "key-two"})
    assert ok.status == 200
    assert "X-Proxy-Key" not in criteo.last_request.headers
    assert (await proxy.get("/_proxy/health")).status == 200
    assert (await proxy.get("/_proxy/ready")).status == 401
    body = await missing.text()
    assert "key-one" not in body
    assert "key-two" not in body


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


# --- no client credential reaches the upstream, with hypothesis -------------------------


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
