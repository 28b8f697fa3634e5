"""Transient failures (DESIGN section 10): the pure policy, then every rule over real sockets.

The fake Criteo answers 503 n times then 200, 503 with Retry-After, or drops the
connection after reading a request; a closed loopback port stands for a host that
refuses connections. Waits are asserted on the fake's own arrival timestamps.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from proxy.config.schema import TransientRetryConfig
from proxy.fakes.criteo import FakeCriteo
from proxy.forwarding.retries import TransientPolicy, parse_retry_after, retry_delay
from tests.conftest import StartProxy

API = "/2026-07/echo/flaky"
DEFAULT = TransientPolicy.from_config(TransientRetryConfig())


def top(low: float, high: float) -> float:
    """A 'random' draw at the top of the jitter range: the longest wait allowed."""
    return high


def delay(failure: Any, **given: Any) -> float | None:
    arguments: dict[str, Any] = {
        "method": "GET",
        "body_replayable": True,
        "retries_done": 0,
        "waited_seconds": 0.0,
        "rand": top,
        **given,
    }
    policy = arguments.pop("policy", DEFAULT)
    return retry_delay(policy, failure, **arguments)


# --- the policy, pure -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "PUT"])
def test_a_failure_to_connect_is_retried_for_every_method(method: str) -> None:
    assert delay("connect", method=method) == 0.25


@pytest.mark.parametrize(
    ("failure", "method", "replayable", "retried"),
    [
        ("reset", "GET", True, True),
        ("reset", "DELETE", True, True),
        ("reset", "POST", True, False),  # it was sent: Criteo may have acted on it
        ("reset", "PUT", False, False),  # the body cannot be sent again
        (503, "GET", True, True),
        (502, "OPTIONS", True, True),
        (504, "HEAD", True, True),
        (503, "POST", True, False),
        (503, "PATCH", True, False),
        (503, "PUT", False, False),
        (500, "GET", True, False),  # not in retry.transient.statuses
        ("connect", "POST", False, False),  # a streamed body already under way
    ],
)
def test_what_was_sent_is_retried_only_for_idempotent_methods_with_a_replayable_body(
    failure: Any, method: str, replayable: bool, retried: bool
) -> None:
    assert (delay(failure, method=method, body_replayable=replayable) is not None) is retried


def test_waits_double_from_a_quarter_second_with_full_jitter() -> None:
    policy = TransientPolicy.from_config(TransientRetryConfig(attempts=5, max_delay=100))
    ceilings = [delay(503, policy=policy, retries_done=n) for n in range(5)]
    assert ceilings == [0.25, 0.5, 1.0, 2.0, 4.0]
    draws: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        draws.append((low, high))
        return low

    assert delay(503, retries_done=1, rand=record) == 0.0
    assert draws == [(0.0, 0.5)]  # full jitter: anywhere from 0 to the ceiling


def test_the_waits_of_a_request_never_add_up_beyond_max_delay() -> None:
    policy = TransientPolicy.from_config(TransientRetryConfig(attempts=10, max_delay=1.0))
    waited, retries = 0.0, 0
    while (
        wait := delay(503, policy=policy, retries_done=retries, waited_seconds=waited)
    ) is not None:
        waited += wait
        retries += 1
    assert retries == 10
    assert waited == pytest.approx(1.0)


def test_attempts_bound_the_retries_and_zero_turns_them_off() -> None:
    assert delay(503, retries_done=1) is not None
    assert delay(503, retries_done=2) is None
    off = TransientPolicy.from_config(TransientRetryConfig(attempts=0))
    assert delay("connect", policy=off) is None
    assert not off.may_retry_status(503)


def test_retry_after_is_honoured_when_it_fits_in_what_is_left_of_max_delay() -> None:
    assert delay(503, retry_after="3") == 3.0
    assert delay(503, retry_after="3", waited_seconds=8.0) is None  # 2 s left: passed on
    assert delay(503, retry_after="11") is None
    now = 1_800_000_000.0
    in_four = email.utils.formatdate(now + 4, usegmt=True)
    assert delay(503, retry_after=in_four, now=now) == pytest.approx(4.0)
    assert delay(503, retry_after="not a date") == 0.25  # ignored: the usual wait


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("120", 120.0), ("Thu, 01 Jan 2027 00:00:10 GMT", 10.0), ("-5", None), ("", None)],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(value: str, seconds: float | None) -> None:
    now = 1798761600.0  # 2027-01-01T00:00:00Z
    assert parse_retry_after(value, now=now) == seconds


# --- over real sockets ------------------------------------------------------------------------


async def metric(proxy: TestClient[Any, Any], name: str, **labels: str) -> float:
    text = await (await proxy.get("/_proxy/metrics")).text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def attempts_at(criteo: FakeCriteo, path: str) -> list[Any]:
    return [seen for seen in criteo.requests if seen.raw_path == path]


async def test_503_twice_then_200_reaches_the_client_as_200_after_three_sends(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    criteo.planned_failures[API] = [503, 503]
    resp = await proxy.get(API)
    assert resp.status == 200
    seen = attempts_at(criteo, API)
    assert len(seen) == 3
    assert seen[1].at - seen[0].at <= 0.25 + 0.1  # the first wait: at most 0.25 s
    assert seen[2].at - seen[1].at <= 0.5 + 0.1  # then at most 0.5 s
    assert await metric(proxy, "criteo_proxy_transient_retries_total", reason="503") == 2
    record = (await (await proxy.get("/_proxy/requests")).json())["requests"][-1]
    assert record["retried"] == "transient"
    retries = [r.getMessage() for r in caplog.records if "transient failure" in r.getMessage()]
    assert len(retries) == 2
    assert all("(503)" in line for line in retries)
    [access] = [
        r.getMessage()
        for r in caplog.records
        if r.name == "criteo_proxy.access" and f" {API} " in r.getMessage()
    ]
    assert "retried=transient" in access


async def test_the_last_answer_goes_to_the_client_unchanged_after_1_plus_attempts_sends(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    criteo.planned_failures[API] = [503, 502, 503, 503]
    resp = await proxy.get(API)
    assert resp.status == 503
    assert "X-Criteo-Proxy-Error" not in resp.headers  # Criteo's answer, not ours
    assert (await resp.json())["errors"][0]["code"] == "service-unavailable"
    assert len(attempts_at(criteo, API)) == 3
    assert criteo.planned_failures[API] == [503]


async def test_a_post_is_never_retried_once_sent(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    criteo.planned_failures[API] = [503]
    resp = await proxy.post(API, data=b'{"report": 1}')
    assert resp.status == 503
    assert len(attempts_at(criteo, API)) == 1
    criteo.planned_failures[API] = ["reset"]
    lost = await proxy.post(API, data=b'{"report": 2}')
    assert lost.status == 502
    assert lost.headers["X-Criteo-Proxy-Error"] == "upstream_unavailable"
    assert len(attempts_at(criteo, API)) == 2


async def test_a_put_body_is_byte_identical_on_every_attempt(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    body = os.urandom(200_000)
    criteo.planned_failures[API] = [503, "reset"]
    resp = await proxy.put(API, data=body)
    assert resp.status == 200
    assert (await resp.json())["bodySha256"] == hashlib.sha256(body).hexdigest()
    seen = attempts_at(criteo, API)
    assert [s.body for s in seen] == [body, body, body]
    assert [s.headers["Content-Length"] for s in seen] == [str(len(body))] * 3


async def test_a_connection_lost_before_the_answer_is_retried_for_a_get_each_send_counted(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """aiohttp's own silent resend is off: the fake sees exactly 1 + attempts sends."""
    proxy = await start_proxy(retry={"transient": {"attempts": 2}})
    criteo.planned_failures[API] = ["reset", "reset", "reset"]
    resp = await proxy.get(API)
    assert resp.status == 502
    assert resp.headers["X-Criteo-Proxy-Error"] == "upstream_unavailable"
    assert len(attempts_at(criteo, API)) == 3
    assert await metric(proxy, "criteo_proxy_transient_retries_total", reason="reset") == 2
    criteo.planned_failures[API] = ["reset"]
    assert (await proxy.get(API)).status == 200


async def test_a_refused_connection_is_retried_for_every_method(
    start_proxy: StartProxy, criteo_url: str
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proxy = await start_proxy(
        upstream={"url": closed, "token_url": criteo_url + "/oauth2/token"},
        retry={"transient": {"max_delay": 0.2}},
    )
    resp = await proxy.post(API, data=b"{}")
    assert resp.status == 502
    assert resp.headers["X-Criteo-Proxy-Error"] == "upstream_unavailable"
    assert await metric(proxy, "criteo_proxy_transient_retries_total", reason="connect") == 2


async def test_retry_after_is_honoured_when_it_fits_and_passed_on_when_it_does_not(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    criteo.retry_after = "1"
    criteo.planned_failures[API] = [503]
    assert (await proxy.get(API)).status == 200
    first, second = attempts_at(criteo, API)
    assert 1.0 <= second.at - first.at < 1.5

    criteo.retry_after = "30"  # beyond retry.transient.max_delay (10 s)
    criteo.planned_failures[API] = [503]
    resp = await proxy.get(API)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "30"
    assert len(attempts_at(criteo, API)) == 3


async def test_max_delay_bounds_the_waits_of_one_request(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(retry={"transient": {"attempts": 6, "max_delay": 0.3}})
    criteo.planned_failures[API] = [503] * 6
    assert (await proxy.get(API)).status == 200
    seen = attempts_at(criteo, API)
    assert len(seen) == 7
    assert seen[-1].at - seen[0].at < 0.3 + 0.2  # the waits, plus seven quick sends


async def test_attempts_zero_turns_transient_retries_off(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(retry={"transient": {"attempts": 0}})
    criteo.planned_failures[API] = [503]
    assert (await proxy.get(API)).status == 503
    assert len(attempts_at(criteo, API)) == 1


async def test_a_streamed_body_is_not_retried_after_a_503(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(retry={"body_limit": 10})
    criteo.planned_failures[API] = [503]
    assert (await proxy.put(API, data=b"x" * 1000)).status == 503
    assert len(attempts_at(criteo, API)) == 1


async def test_a_401_and_then_a_503_are_retried_once_each(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """The rules compose: the 401 replay is its own; the transient part stays within
    1 + attempts sends."""
    proxy = await start_proxy(retry={"transient": {"attempts": 1}})
    assert (await proxy.get("/2026-07/advertisers/me")).status == 200
    sends: list[str] = []

    async def unavailable(request: web.Request) -> web.Response:
        sends.append(request.headers["Authorization"])
        return web.json_response({"errors": [{"code": "busy"}]}, status=503)

    criteo.handlers[API] = unavailable
    criteo.revoke_tokens()  # the first send meets a 401
    resp = await proxy.get(API)
    assert resp.status == 503
    assert len(sends) == 2  # after the 401 (not counted by the fake's handler): 503, 503
    assert sends[0] == sends[1]  # both with the new token
    assert await metric(proxy, "criteo_proxy_401_retries_total") == 1
    assert await metric(proxy, "criteo_proxy_transient_retries_total", reason="503") == 1


async def test_a_client_that_leaves_during_a_wait_ends_the_retries(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(retry={"transient": {"attempts": 2}})
    answered = asyncio.Event()
    sends = 0

    async def unavailable(request: web.Request) -> web.Response:
        nonlocal sends
        sends += 1
        answered.set()
        return web.json_response({}, status=503, headers={"Retry-After": "5"})

    criteo.handlers[API] = unavailable
    request = asyncio.ensure_future(proxy.get(API))
    async with asyncio.timeout(5):
        await answered.wait()
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    # The proxy's wait is cancelled with its handler, which records the request as 499
    # (the client closed it) on its way out: no retry is left running.
    for _ in range(500):  # each round trip lets the cancellation progress; no sleep needed
        records = (await (await proxy.get("/_proxy/requests")).json())["requests"]
        if records:
            break
    assert [(r["path"], r["status"]) for r in records] == [(API, 499)]
    assert sends == 1


@pytest.fixture
async def flaky_cli_proxy(
    criteo: FakeCriteo, criteo_url: str, start_cli_server: Any
) -> AsyncIterator[str]:
    from tests.conftest import clean_env

    criteo.fail_one_in = 3
    server = await start_cli_server(
        "--upstream",
        criteo_url,
        "--port",
        "0",
        env=clean_env(CRITEO_CLIENT_ID="demo-client", CRITEO_CLIENT_SECRET="demo-secret"),
    )
    yield server.url
    assert await server.stop() == 0


async def test_one_failure_in_three_never_reaches_a_client_with_the_default_config(
    flaky_cli_proxy: str, criteo: FakeCriteo
) -> None:
    import aiohttp

    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(30):
            async with http.get(flaky_cli_proxy + "/2026-07/advertisers/me") as resp:
                statuses.append(resp.status)
        async with http.get(flaky_cli_proxy + "/_proxy/metrics") as resp:
            text = await resp.text()
    assert statuses == [200] * 30
    [retried] = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "criteo_proxy_transient_retries_total" and s.labels == {"reason": "503"}
    ]
    assert retried >= 9  # a third of the sends, at least
