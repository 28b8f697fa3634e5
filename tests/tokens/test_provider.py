"""The token provider through a real proxy: cache, single flight, renewal, the 401 rule, back-off.

DESIGN §3.1-3.3. The proxy and the fake share one ManualClock, so expiry and back-off
are driven by moving the clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from proxy.config.schema import Secret
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from proxy.server.app import TOKENS
from proxy.tokens.grants import ClientCredentialsGrant
from proxy.tokens.provider import TokenProvider
from tests.conftest import ManualClock, StartProxy
from tests.tokens import through_proxy
from tests.tokens.through_proxy import ERROR_HEADER, ME, Attempt, error_of

# The fake of these tests records every API attempt: through_proxy's fixtures, for this module.
attempts = through_proxy.attempts
criteo_server = through_proxy.criteo_server


# --- helpers -----------------------------------------------------------------------------


CRITEO_401_BODY = json.dumps(
    {
        "errors": [
            {
                "traceId": "4f1c0ffee",
                "traceIdentifier": "4f1c0ffee",
                "type": "authorization",
                "code": "authorization-token-invalid",
                "instance": "/2026-07/always-401",
                "title": "The authorization token is invalid",
                "detail": "The authorization token is invalid",
            }
        ],
        "warnings": [],
    }
).encode()


def criteo_401() -> web.Response:
    return web.Response(status=401, body=CRITEO_401_BODY, content_type="application/json")


def provider_of(proxy: TestClient[Any, Any]) -> TokenProvider:
    return proxy.app[TOKENS]  # type: ignore[index]


def count_token_calls(provider: TokenProvider, target: int) -> asyncio.Event:
    """An event set once TARGET requests have asked PROVIDER for a token.

    It wraps, it does not replace: each call still goes to the real get_token,
    which runs up to its first await before the test can see the event.
    """
    reached = asyncio.Event()
    original = provider.get_token
    calls = 0

    async def get_token() -> Any:
        nonlocal calls
        calls += 1
        if calls >= target:
            reached.set()
        return await original()

    provider.get_token = get_token  # type: ignore[method-assign]
    return reached


async def concurrent_gets(
    proxy: TestClient[Any, Any],
    count: int,
    *,
    before_release: Callable[[], Awaitable[None]] | None = None,
) -> list[tuple[int, dict[str, str], bytes]]:
    """COUNT simultaneous GETs, each on its own connection (no client pool limit)."""
    base = str(proxy.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> tuple[int, dict[str, str], bytes]:
            async with session.get(base + ME) as resp:
                return resp.status, dict(resp.headers), await resp.read()

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        if before_release is not None:
            await before_release()
        return await asyncio.gather(*tasks)


# --- 3.1: cache and single flight ----------------------------------------------------------


async def test_200_concurrent_requests_on_a_cold_cache_cause_exactly_one_token_request(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock
) -> None:
    release = asyncio.Event()
    criteo.token_gate = release.wait  # the token endpoint holds its answer until released
    proxy = await start_proxy(clock=clock)
    all_waiting = count_token_calls(provider_of(proxy), 200)

    async def release_when_all_wait() -> None:
        await all_waiting.wait()
        release.set()

    results = await concurrent_gets(proxy, 200, before_release=release_when_all_wait)

    assert [status for status, _, _ in results] == [200] * 200
    assert len(criteo.token_requests) == 1
    assert len(criteo.requests) == 200
    assert len({seen.token for seen in criteo.requests}) == 1


async def test_sequential_requests_reuse_one_cached_token(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock
) -> None:
    proxy = await start_proxy(clock=clock)
    for _ in range(25):
        resp = await proxy.get(ME)
        assert resp.status == 200
        clock.advance(10)  # 250 s in all: well inside one 900 s lifetime
    assert len(criteo.token_requests) == 1
    assert len({seen.token for seen in criteo.requests}) == 1


async def test_tokens_are_renewed_before_expiry_with_the_margin_capped_at_half_the_lifetime(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock, attempts: list[Attempt]
) -> None:
    criteo.expires_in = 10  # refresh_margin 60 is capped at 10 / 2 = 5 s
    proxy = await start_proxy(tokens={"refresh_margin": 60}, clock=clock)
    remaining_at_use = []
    for _ in range(31):  # t = 0 .. 30 s: more than three token lifetimes
        resp = await proxy.get(ME)
        assert resp.status == 200
        token = criteo.last_request.token
        assert token is not None
        remaining_at_use.append(criteo.issued[token] - clock.now)
        clock.advance(1)

    # The fake checks expiry on the same clock: it never had to refuse a token.
    assert [a.status for a in attempts] == [200] * 31
    # Renewed every 5 s (at t = 0, 5, ..., 30), always with more than the margin left.
    assert len(criteo.token_requests) == 7
    assert min(remaining_at_use) == 6
    assert len({seen.token for seen in criteo.requests}) == 7


async def test_refresh_margin_renews_60_seconds_before_a_900_second_token_expires(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock
) -> None:
    proxy = await start_proxy(tokens={"refresh_margin": 60}, clock=clock)
    assert (await proxy.get(ME)).status == 200
    first = criteo.last_request.token

    clock.advance(839)
    assert (await proxy.get(ME)).status == 200
    assert criteo.last_request.token == first
    assert len(criteo.token_requests) == 1

    clock.advance(2)  # +841: inside the 60 s margin
    assert (await proxy.get(ME)).status == 200
    assert criteo.last_request.token != first
    assert len(criteo.token_requests) == 2


# --- 3.2: on 401 from the API ----------------------------------------------------------------


async def test_revoked_token_is_replaced_and_the_request_retried_once(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock, attempts: list[Attempt]
) -> None:
    proxy = await start_proxy(clock=clock)
    assert (await proxy.get(ME)).status == 200
    old = criteo.last_request.token
    criteo.revoke_tokens()
    attempts.clear()

    resp = await proxy.get(ME)

    assert resp.status == 200
    assert (await resp.json())["data"][0]["id"] == "12345"
    assert [a.status for a in attempts] == [401, 200]
    assert attempts[0].headers["Authorization"] == f"Bearer {old}"
    assert attempts[1].headers["Authorization"] != f"Bearer {old}"
    assert len(criteo.token_requests) == 2


async def test_many_requests_hitting_401_together_fetch_one_new_token(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock, attempts: list[Attempt]
) -> None:
    proxy = await start_proxy(clock=clock)
    assert (await proxy.get(ME)).status == 200
    criteo.revoke_tokens()

    results = await concurrent_gets(proxy, 30)

    assert [status for status, _, _ in results] == [200] * 30
    # One for the start, one for all 30 retries: a stale token's 401 drops nothing new.
    assert len(criteo.token_requests) == 2


async def test_second_401_goes_back_to_the_client_as_criteo_sent_it(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock
) -> None:
    calls = 0

    async def always_401(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return criteo_401()

    criteo.handlers["/2026-07/always-401"] = always_401
    proxy = await start_proxy(clock=clock)

    resp = await proxy.get("/2026-07/always-401")

    assert resp.status == 401
    assert await resp.read() == CRITEO_401_BODY
    assert resp.headers["Content-Type"].startswith("application/json")
    assert ERROR_HEADER not in resp.headers  # Criteo spoke, not the proxy
    assert error_of(CRITEO_401_BODY)["code"] == "authorization-token-invalid"
    assert calls == 2
    assert len(criteo.token_requests) == 2


async def test_retry_replays_method_path_headers_and_body_bytes_exactly(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock, attempts: list[Attempt]
) -> None:
    calls = 0

    async def flaky(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        body = await request.read()
        if calls == 1:
            return criteo_401()
        return web.json_response({"sha256": hashlib.sha256(body).hexdigest()})

    criteo.handlers["/2026-07/retail-media/assets"] = flaky
    payload = bytes(range(256)) * 16 + b"\x00\r\n\r\n\xff"  # binary, with CRLFs and NULs
    proxy = await start_proxy(clock=clock)
    attempts.clear()

    resp = await proxy.post(
        "/2026-07/retail-media/assets?a=1&a=2&b=",
        data=payload,
        headers={
            "Content-Type": "application/octet-stream",
            "X-Custom": "kept",
            "Authorization": "Bearer client-own",
        },
    )

    assert resp.status == 200
    assert (await resp.json())["sha256"] == hashlib.sha256(payload).hexdigest()
    first, second = attempts
    assert (first.status, second.status) == (401, 200)
    assert first.body == second.body == payload
    assert first.method == second.method == "POST"
    assert first.raw_path == second.raw_path == "/2026-07/retail-media/assets?a=1&a=2&b="
    assert first.headers["Authorization"] != second.headers["Authorization"]
    assert "client-own" not in first.headers["Authorization"]

    def without_authorization(headers: CIMultiDict[str]) -> list[tuple[str, str]]:
        return [(k.lower(), v) for k, v in headers.items() if k.lower() != "authorization"]

    assert without_authorization(first.headers) == without_authorization(second.headers)
    assert first.headers["X-Custom"] == "kept"


async def test_401_on_a_body_over_retry_body_limit_is_returned_without_retry_and_logged(
    start_proxy: StartProxy,
    criteo: FakeCriteo,
    clock: ManualClock,
    attempts: list[Attempt],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def always_401(request: web.Request) -> web.Response:
        await request.read()
        return criteo_401()

    criteo.handlers["/2026-07/upload"] = always_401
    payload = bytes(range(250)) * 20  # 5000 bytes > body_limit 1000
    proxy = await start_proxy(retry={"body_limit": 1000}, clock=clock)
    attempts.clear()

    resp = await proxy.post("/2026-07/upload", data=payload)

    assert resp.status == 401
    assert await resp.read() == CRITEO_401_BODY
    assert len(attempts) == 1
    assert attempts[0].body == payload  # streamed through intact
    assert len(criteo.token_requests) == 1
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "not retried" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "retry.body_limit" in warnings[0]


async def test_invalidate_drops_only_the_token_that_got_the_401(
    criteo: FakeCriteo, criteo_url: str, clock: ManualClock
) -> None:
    async with aiohttp.ClientSession() as session:
        provider = TokenProvider(
            session,
            ClientCredentialsGrant(
                client_id=DEMO_CLIENT_ID, client_secret=Secret(DEMO_CLIENT_SECRET)
            ),
            token_url=criteo_url + "/oauth2/token",
            margin_seconds=60,
            timeout_seconds=5,
            clock=clock,
        )
        a = await provider.get_token()
        assert await provider.get_token() is a

        provider.invalidate(a)
        b = await provider.get_token()
        assert b.access_token != a.access_token
        assert len(criteo.token_requests) == 2

        provider.invalidate(a)  # a late 401 for the old token: B must survive
        assert provider.cached_token() is b
        assert await provider.get_token() is b
        assert len(criteo.token_requests) == 2


# --- 3.3: back-off while the token endpoint fails -----------------------------------------


async def test_back_off_fails_fast_doubles_to_30_seconds_and_recovers(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock
) -> None:
    criteo.token_failure_status = 503
    proxy = await start_proxy(clock=clock)
    provider = provider_of(proxy)

    first = await proxy.get(ME)
    assert first.status == 502
    assert first.headers[ERROR_HEADER] == "token_endpoint_unavailable"
    first_error = error_of(await first.read())
    assert len(criteo.token_requests) == 1

    for window in (1, 2, 4, 8, 16, 30, 30):
        assert provider.backoff_remaining_seconds() == pytest.approx(window)
        clock.advance(window - 0.5)
        for _ in range(5):  # inside the window: the last error, at once, no token request
            resp = await proxy.get(ME)
            assert resp.status == 502
            assert resp.headers[ERROR_HEADER] == "token_endpoint_unavailable"
            assert error_of(await resp.read())["detail"] == first_error["detail"]
        fetched = len(criteo.token_requests)
        clock.advance(0.5)  # the window is over: one new attempt
        assert (await proxy.get(ME)).status == 502
        assert len(criteo.token_requests) == fetched + 1

    criteo.token_failure_status = None
    assert (await proxy.get(ME)).status == 502  # still inside the last 30 s window
    clock.advance(30)
    resp = await proxy.get(ME)
    assert resp.status == 200
    assert provider.backoff_remaining_seconds() == 0
    assert (await proxy.get(ME)).status == 200


async def test_token_endpoint_down_under_load_is_bounded_to_one_token_request(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock
) -> None:
    criteo.token_failure_status = 503
    proxy = await start_proxy(clock=clock)
    resp = await proxy.get(ME)
    assert resp.status == 502
    assert resp.headers[ERROR_HEADER] == "token_endpoint_unavailable"
    assert "503" in error_of(await resp.read())["detail"]
    assert len(criteo.token_requests) == 1

    # The window has passed; 100 requests arrive while the next attempt is in flight.
    clock.advance(1)
    release = asyncio.Event()
    criteo.token_gate = release.wait
    all_waiting = count_token_calls(provider_of(proxy), 100)

    async def release_when_all_wait() -> None:
        await all_waiting.wait()
        release.set()

    results = await concurrent_gets(proxy, 100, before_release=release_when_all_wait)
    assert {(status, headers[ERROR_HEADER]) for status, headers, _ in results} == {
        (502, "token_endpoint_unavailable")
    }
    assert len(criteo.token_requests) == 2

    results = await concurrent_gets(proxy, 100)  # inside the new window: all fail fast
    assert {status for status, _, _ in results} == {502}
    assert len(criteo.token_requests) == 2

    criteo.token_failure_status = None
    clock.advance(2)
    results = await concurrent_gets(proxy, 100)
    assert {status for status, _, _ in results} == {200}
    assert len(criteo.token_requests) == 3


async def test_server_starts_while_the_token_endpoint_is_down_and_recovers(
    start_proxy: StartProxy,
    criteo: FakeCriteo,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    criteo.token_failure_status = 503
    proxy = await start_proxy(clock=clock)

    ready = await proxy.get("/_proxy/ready")
    assert ready.status == 503
    assert (await ready.json())["code"] == "token_endpoint_unavailable"
    assert (await proxy.get("/_proxy/health")).status == 200
    start_warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING
        and r.name.startswith("criteo_proxy")
        and "at start" in r.getMessage()
    ]
    assert len(start_warnings) == 1

    criteo.token_failure_status = None
    clock.advance(1)  # past the first back-off window
    assert (await proxy.get("/_proxy/ready")).status == 200
    assert (await proxy.get(ME)).status == 200
