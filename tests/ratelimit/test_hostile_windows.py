"""Rate-limit headers that no window of Criteo's could carry are ignored, never trusted,
and a window that nothing renews is forgotten (issue 20, items 1 and 2)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from aiohttp import web

from proxy.fakes.criteo import FakeCriteo
from proxy.ratelimit.window import Window
from proxy.ratelimit.window_headers import read_window
from tests.conftest import StartProxy

HOSTILE_PATH = "/2026-07/hostile"


def _window_headers(limit: str, remaining: str, reset: str) -> dict[str, str]:
    return {
        "x-ratelimit-limit": limit,
        "x-ratelimit-remaining": remaining,
        "x-ratelimit-reset": reset,
    }


def _hostile(criteo: FakeCriteo, headers: dict[str, str]) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response({"data": []}, headers=headers)

    criteo.handlers[HOSTILE_PATH] = answer


def _hostile_cases() -> list[Any]:
    now = time.time()
    return [
        pytest.param(_window_headers("250", "4", "1e20"), id="reset-1e20"),
        pytest.param(_window_headers("250", "0", str(int(now * 1000))), id="reset-in-ms"),
        pytest.param(_window_headers("250", "0", str(int(now + 365 * 86400))), id="year-ahead"),
        pytest.param(_window_headers("250", "0", "nan"), id="reset-nan"),
        pytest.param(_window_headers("250", "0", "inf"), id="reset-inf"),
        pytest.param(_window_headers("250", "0", str(int(now - 86400))), id="a-day-ago"),
        pytest.param(_window_headers("250", "-3", str(int(now + 30))), id="negative-remaining"),
        pytest.param(_window_headers("-250", "0", str(int(now + 30))), id="negative-limit"),
        pytest.param(_window_headers("5", "900", str(int(now + 30))), id="remaining-over-limit"),
        pytest.param(_window_headers("9" * 400, "0", str(int(now + 30))), id="400-digits"),
        pytest.param(_window_headers("250", "0", "9" * 400), id="reset-400-digits"),
    ]


@pytest.mark.parametrize("headers", _hostile_cases())
async def test_an_implausible_window_never_breaks_status_nor_holds_the_bucket(
    start_proxy: StartProxy, criteo: FakeCriteo, headers: dict[str, str]
) -> None:
    _hostile(criteo, headers)
    proxy = await start_proxy(rate_limit={"max_wait": 0.5})
    assert (await proxy.get(HOSTILE_PATH)).status == 200
    status = await proxy.get("/_proxy/status")
    assert status.status == 200
    (profile,) = (await status.json())["profiles"]
    for window in profile["rate_limits"]:
        assert window["reset_in_seconds"] is None or window["reset_in_seconds"] <= 61
    for i in range(4):  # the same bucket, as many again as the bogus window would allow
        answer = await proxy.get(f"/2026-07/echo/{i}")
        assert answer.status == 200, await answer.text()
        assert "X-Criteo-Proxy-Error" not in answer.headers
    requests = (await (await proxy.get("/_proxy/requests")).json())["requests"]
    assert [r["status"] for r in requests] == [200] * 5
    assert all(r["rate_limit_wait_ms"] < 500 for r in requests), requests


async def test_implausible_headers_are_logged_once_per_bucket(
    start_proxy: StartProxy, criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    _hostile(criteo, _window_headers("250", "0", "1e20"))
    proxy = await start_proxy()
    with caplog.at_level(logging.WARNING, logger="criteo_proxy.pacing"):
        for _ in range(3):
            assert (await proxy.get(HOSTILE_PATH)).status == 200
    said = [r.getMessage() for r in caplog.records if "implausible" in r.getMessage()]
    assert len(said) == 1, said
    assert "rate-limit window api" in said[0]


async def test_a_plausible_answer_after_a_year_ahead_reset_is_not_dropped_as_late(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    _hostile(criteo, _window_headers("250", "0", str(int(time.time() + 365 * 86400))))
    proxy = await start_proxy()
    assert (await proxy.get(HOSTILE_PATH)).status == 200
    criteo.rate_limit, criteo.rate_window_seconds = 10, 30
    assert (await proxy.get("/2026-07/echo/plausible")).status == 200
    (profile,) = (await (await proxy.get("/_proxy/status")).json())["profiles"]
    (api,) = [w for w in profile["rate_limits"] if w["bucket"] == "api"]
    assert (api["limit"], api["remaining"]) == (10, 9)
    assert 0 <= api["reset_in_seconds"] <= 31


async def test_a_spent_window_that_no_answer_renews_is_forgotten(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """Criteo stops sending x-ratelimit-*: once the known window has passed, nothing waits."""
    criteo.rate_limit, criteo.rate_window_seconds = 2, 1
    proxy = await start_proxy()
    spent = await asyncio.gather(*(proxy.get(f"/2026-07/echo/spend-{i}") for i in range(2)))
    assert [r.status for r in spent] == [200, 200]
    criteo.rate_limit = None  # from now on, answers carry no rate-limit headers
    # The window is spent: this one waits for its reset, then meets an answer without headers.
    assert (await proxy.get("/2026-07/echo/after-reset")).status == 200
    (profile,) = (await (await proxy.get("/_proxy/status")).json())["profiles"]
    (api,) = [w for w in profile["rate_limits"] if w["bucket"] == "api"]
    assert (api["metered"], api["limit"], api["remaining"]) == (False, None, None)
    for i in range(8):
        assert (await proxy.get(f"/2026-07/echo/free-{i}")).status == 200
    requests = (await (await proxy.get("/_proxy/requests")).json())["requests"]
    free = [r for r in requests if "/free-" in r["path"]]
    assert len(free) == 8
    assert all(r["rate_limit_wait_ms"] < 500 for r in free), free


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        (_window_headers("25\u00b2", "0", "1000"), "whole numbers"),  # '²' passes isdigit()
        (_window_headers("250", "\u0663", "1000"), "whole numbers"),  # int('٣') == 3
        (_window_headers("250", "0", "1\u0663"), "epoch seconds"),
        (_window_headers("250", "0", "1e3"), "epoch seconds"),
        (_window_headers("5", "6", "1000"), "6 remaining of 5"),
        (_window_headers("5", "1", "1061"), "+61 s from now"),
        (_window_headers("5", "1", "939"), "-61 s from now"),
    ],
)
def test_read_window_says_why_a_window_is_implausible(headers: dict[str, str], why: str) -> None:
    verdict = read_window(headers, now=1000.0)
    assert isinstance(verdict, str)
    assert why in verdict


def test_read_window_takes_a_window_of_up_to_a_minute() -> None:
    for reset in ("1000", "1059.5", "1060", "940"):
        window = read_window(_window_headers("250", "249", reset), now=1000.0)
        assert window is not None
        assert not isinstance(window, str)
        assert window.reset_at == float(reset)


async def test_a_window_renewed_by_the_clock_is_kept_while_answers_are_failures() -> None:
    """A failure (no answer at all) says nothing about metering: the window stays."""
    now = [1000.0]
    window = Window("api", clock=lambda: now[0])
    await window.acquire(30)
    window.answered(_window_headers("3", "2", "1010"))
    now[0] = 1020.0  # the window's reset has passed
    await window.acquire(30)
    window.answered(None)
    assert window.snapshot().metered is True
    await window.acquire(30)
    window.answered({"Content-Type": "application/json"})  # an answer without headers
    assert window.snapshot().metered is False
