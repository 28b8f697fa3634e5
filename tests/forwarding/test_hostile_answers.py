"""Answers no honest Criteo gives (issue 20, items 6 and 12): whatever an upstream
header or error body holds, the client gets an answer, never a bare 500 nor a dropped
connection, and the proxy goes on serving."""

from __future__ import annotations

import email.utils
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from proxy.config.schema import TransientRetryConfig
from proxy.fakes.criteo import FakeCriteo
from proxy.forwarding.retries import TransientPolicy, parse_retry_after, retry_delay

FLAKY = "/2026-07/echo/flaky"
NOW = 1_800_000_000.0

# --- Retry-After (item 6) ---------------------------------------------------------------

_UNREADABLE_RETRY_AFTER = [
    pytest.param("²", id="superscript-two"),
    pytest.param("٣", id="arabic-indic-three"),
    pytest.param("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", id="year-1e20"),
    pytest.param("Mon, 01 Jan 2027 99:99:99 GMT", id="hour-99"),
    pytest.param("1e5", id="exponent"),
    pytest.param("Fri, 31 Dec 9999 23:59:59 GMT" + " " * 200 + "x", id="date-and-junk"),
]
_ABSURDLY_FAR = [
    pytest.param("9" * 400, id="400-digits"),
    pytest.param("9" * 5000, id="5000-digits"),
    pytest.param("99999999999", id="3000-years"),
    pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", id="year-9999"),
]


@pytest.mark.parametrize("value", _UNREADABLE_RETRY_AFTER)
def test_an_unreadable_retry_after_is_ignored(value: str) -> None:
    assert parse_retry_after(value, now=NOW) is None
    policy = TransientPolicy.from_config(TransientRetryConfig())
    wait = retry_delay(
        policy,
        503,
        method="GET",
        body_replayable=True,
        retries_done=0,
        waited_seconds=0.0,
        retry_after=value,
        now=NOW,
        rand=lambda low, high: high,
    )
    assert wait == 0.25  # the usual first wait, as if there were no Retry-After


@pytest.mark.parametrize("value", _ABSURDLY_FAR)
def test_an_absurdly_far_retry_after_passes_the_answer_on(value: str) -> None:
    asked = parse_retry_after(value, now=NOW)
    assert asked is not None
    assert asked > 10**9
    policy = TransientPolicy.from_config(TransientRetryConfig())
    wait = retry_delay(
        policy,
        503,
        method="GET",
        body_replayable=True,
        retries_done=0,
        waited_seconds=0.0,
        retry_after=value,
        now=NOW,
    )
    assert wait is None  # longer than retry.transient.max_delay: passed on (DESIGN 10)


def test_a_sane_retry_after_still_reads_as_before() -> None:
    assert parse_retry_after(" 7 ", now=NOW) == 7.0
    in_four = email.utils.formatdate(NOW + 4, usegmt=True)
    assert parse_retry_after(in_four, now=NOW) == pytest.approx(4.0)


@pytest.mark.parametrize("value", [*_UNREADABLE_RETRY_AFTER, *_ABSURDLY_FAR])
async def test_a_hostile_retry_after_never_makes_a_500(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, value: str
) -> None:
    criteo.retry_after = value
    criteo.planned_failures[FLAKY] = [503]
    resp = await proxy.get(FLAKY)
    assert resp.status in (200, 503), await resp.text()
    assert "X-Criteo-Proxy-Error" not in resp.headers
    criteo.retry_after = None
    assert (await proxy.get(FLAKY)).status == 200
