"""Rate-limit pacing (DESIGN section 3.5) against a fake Criteo that meters per window."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.fakes.criteo import FakeCriteo
from proxy.ratelimit.pacer import bucket_for
from proxy.ratelimit.window import RateLimited, Window
from proxy.ratelimit.window_headers import parse_window
from tests.conftest import StartProxy


async def gauge(proxy: Any, name: str) -> float:
    text = await (await proxy.get("/_proxy/metrics")).text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in metrics")


async def test_burst_of_three_times_the_limit_gets_no_429_and_takes_the_windows_it_needs(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    criteo.rate_limit, criteo.rate_window_seconds = 5, 1
    proxy = await start_proxy()
    started = time.monotonic()
    responses = await asyncio.gather(*(proxy.get(f"/2026-07/echo/{i}") for i in range(15)))
    elapsed = time.monotonic() - started
    assert [r.status for r in responses] == [200] * 15
    assert criteo.throttled == 0
    assert len(criteo.requests) == 15
    # 15 calls at 5 a window need the current window and two more: at least one reset
    # must have passed, and no more than three windows (plus the release margin).
    assert 0.1 < elapsed < 3.5, elapsed
    print(f"burst: 15 requests, limit 5 per 1 s window, {elapsed:.2f} s, 0 x 429")


async def test_wait_beyond_max_wait_is_a_proxy_429_before_anything_is_sent(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    # A window of Criteo's minute starting now: its reset is a minute away, past max_wait.
    criteo.rate_limit, criteo.rate_window_seconds = 1, 60
    criteo.rate_window_start = time.time()
    proxy = await start_proxy(rate_limit={"max_wait": 0.5})
    assert (await proxy.get("/2026-07/echo/first")).status == 200
    started = time.monotonic()
    refused = await proxy.get("/2026-07/echo/second")
    assert time.monotonic() - started < 0.5  # refused at once, not after max_wait
    assert refused.status == 429
    assert refused.headers["X-Criteo-Proxy-Error"] == "rate_limited"
    (error,) = (await refused.json())["errors"]
    assert error["code"] == "rate_limited"
    assert "max_wait" in error["detail"]
    assert [r.raw_path for r in criteo.requests] == ["/2026-07/echo/first"]
    assert criteo.throttled == 0


async def test_disabled_pacing_passes_criteos_429_through(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    # A window of Criteo's minute starting now: its reset is a minute away, past max_wait.
    criteo.rate_limit, criteo.rate_window_seconds = 1, 60
    criteo.rate_window_start = time.time()
    proxy = await start_proxy(rate_limit={"enabled": False})
    assert (await proxy.get("/2026-07/echo/1")).status == 200
    throttled = await proxy.get("/2026-07/echo/2")
    assert throttled.status == 429
    assert "X-Criteo-Proxy-Error" not in throttled.headers
    assert throttled.headers["x-ratelimit-remaining"] == "0"
    assert (await throttled.json())["errors"][0]["type"] == "quota"
    assert criteo.throttled == 1


async def test_429_from_a_window_spent_elsewhere_is_retried_once_after_the_reset(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """Another app spent the window: the proxy learns it from the 429 and replays after reset."""
    criteo.rate_limit, criteo.rate_window_seconds = 2, 1
    proxy = await start_proxy()
    index = int(time.time() // 1)
    criteo.rate_counts[("api", index)] = 2  # this second's window is already spent
    resp = await proxy.post("/2026-07/echo/replayed", data=b"payload")
    assert resp.status == 200
    assert (await resp.json())["bodyLength"] == len(b"payload")
    assert criteo.throttled >= 1
    assert len(criteo.requests) == 1  # only the accepted attempt reached a handler


async def test_a_client_that_leaves_while_waiting_leaves_the_queue(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    criteo.rate_limit, criteo.rate_window_seconds = 1, 5
    proxy = await start_proxy(rate_limit={"max_wait": 30})
    index = int(time.time() // 5)
    criteo.rate_counts[("api", index + 1)] = 1  # the next window is spent too
    assert (await proxy.get("/2026-07/echo/first")).status == 200
    waiting = asyncio.create_task(proxy.get("/2026-07/echo/leaver"))
    async with asyncio.timeout(5):
        # the metrics endpoint is the only outside view of the queue: poll it
        while await gauge(proxy, "criteo_proxy_rate_limit_waiting_requests") != 1:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    async with asyncio.timeout(5):
        while await gauge(proxy, "criteo_proxy_rate_limit_waiting_requests") != 0:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert [r.raw_path for r in criteo.requests] == ["/2026-07/echo/first"]


async def settle() -> None:
    """Let woken tasks run to their next wait (a few loop turns, no wall-clock sleep)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_waiters_are_released_in_arrival_order() -> None:
    now = [1000.0]
    window = Window("api", clock=lambda: now[0])
    await window.acquire(30)  # the probe, then the rest of the window: all ours
    for remaining in ("2", "1", "0"):
        window.answered(
            {
                "x-ratelimit-limit": "3",
                "x-ratelimit-remaining": remaining,
                "x-ratelimit-reset": "1001",
            }
        )
        if remaining != "0":
            await window.acquire(30)
    released: list[int] = []

    async def wait(i: int) -> None:
        await window.acquire(30)
        released.append(i)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(wait(i)))
        await asyncio.sleep(0)  # let it take its place in line
    assert window.waiting == 5
    now[0] = 1002.0  # the window resets: three slots
    window.answered(
        {"x-ratelimit-limit": "3", "x-ratelimit-remaining": "3", "x-ratelimit-reset": "1003"}
    )
    await settle()
    assert released == [0, 1, 2]
    for _ in range(3):
        window.answered(
            {"x-ratelimit-limit": "3", "x-ratelimit-remaining": "2", "x-ratelimit-reset": "1003"}
        )
    await settle()
    assert released == [0, 1, 2, 3, 4]
    await asyncio.gather(*tasks)


def test_window_headers_are_parsed_and_junk_is_ignored() -> None:
    state = parse_window(
        {
            "x-ratelimit-limit": "250",
            "x-ratelimit-remaining": "7",
            "x-ratelimit-reset": "1800000000",
        }
    )
    assert state is not None
    assert (state.limit, state.remaining, state.reset_at) == (250, 7, 1800000000.0)
    assert (
        parse_window(
            {"x-ratelimit-limit": "x", "x-ratelimit-remaining": "1", "x-ratelimit-reset": "1"}
        )
        is None
    )
    assert parse_window({}) is None
    assert bucket_for("/2026-07/statistics/report") == "reports"
    assert bucket_for("/2026-07/advertisers/me") == "api"


async def test_an_unmetered_upstream_is_not_paced(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy()
    responses = await asyncio.gather(*(proxy.get(f"/2026-07/echo/{i}") for i in range(20)))
    assert all(r.status == 200 for r in responses)
    assert await gauge(proxy, "criteo_proxy_rate_limit_waiting_requests") == 0


async def test_a_slow_first_request_does_not_turn_the_next_ones_into_429s(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """Before the first answer no window is known: others wait briefly, then go; never a 429."""
    release = asyncio.Event()

    async def slow(request: Any) -> Any:
        from aiohttp import web

        await release.wait()
        return web.json_response({"slow": True})

    criteo.handlers["/2026-07/slow"] = slow
    proxy = await start_proxy(rate_limit={"max_wait": 2})
    first = asyncio.create_task(proxy.get("/2026-07/slow"))
    async with asyncio.timeout(5):
        while not criteo.requests:  # noqa: ASYNC110 - the fake's record is the signal
            await asyncio.sleep(0.01)
    second = await proxy.get("/2026-07/echo/next")
    assert second.status == 200
    release.set()
    assert (await first).status == 200


class CountingHeaders(Mapping[str, str]):
    """Answer headers that count every lookup and refuse ``[]`` (a KeyError path)."""

    def __init__(self, items: dict[str, str]) -> None:
        self._items = {name.lower(): value for name, value in items.items()}
        self.lookups = 0

    def __getitem__(self, name: str) -> str:
        raise AssertionError(f"headers[{name!r}]: a missing header would raise KeyError")

    def get(self, name: str, default: Any = None) -> Any:
        self.lookups += 1
        return self._items.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        self.lookups += 1
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


UNMETERED = {"Content-Type": "application/json", "Content-Length": "2"}


def metered(limit: int, remaining: int, reset_at: float) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(reset_at),
    }


def test_an_answer_without_rate_limit_headers_is_parsed_with_one_lookup_and_no_keyerror() -> None:
    headers = CountingHeaders(UNMETERED)
    assert parse_window(headers) is None
    assert headers.lookups == 1
    partial = CountingHeaders({"x-ratelimit-limit": "5", "x-ratelimit-reset": "1800000000"})
    assert parse_window(partial) is None  # a missing remaining: no window, no exception


async def test_a_known_unmetered_window_admits_without_counting_at_one_lookup_an_answer() -> None:
    window = Window("api", clock=lambda: 1000.0)
    assert await window.acquire(30) == 0.0  # the probe
    window.answered(CountingHeaders(UNMETERED))
    assert window.snapshot().metered is False
    assert window.metered is False  # a caller may skip acquire() altogether
    for _ in range(100):  # none of these is counted anywhere
        assert await window.acquire(30) == 0.0
    for _ in range(99):
        headers = CountingHeaders(UNMETERED)
        window.answered(headers)
        assert headers.lookups == 1
    window.answered(None)  # a failure: nothing to look up
    snapshot = window.snapshot()
    assert (snapshot.metered, snapshot.limit, snapshot.remaining, snapshot.waiting) == (
        False,
        None,
        None,
        0,
    )


async def test_an_unmetered_window_turns_metered_when_headers_appear() -> None:
    window = Window("api", clock=lambda: 1000.0)
    await window.acquire(30)
    window.answered(UNMETERED)
    for _ in range(10):
        await window.acquire(30)  # in flight, uncounted, when the headers appear
    window.answered(metered(3, 2, 1050))
    snapshot = window.snapshot()
    assert (snapshot.metered, snapshot.limit, snapshot.remaining) == (True, 3, 2)
    assert await window.acquire(30) == 0.0
    assert await window.acquire(30) == 0.0  # the last call of the window
    with pytest.raises(RateLimited):  # the reset is 50 s away: refused at once
        await window.acquire(30)


async def test_an_upstream_that_starts_metering_is_paced_from_its_first_metered_answer(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(rate_limit={"max_wait": 0.5})
    for i in range(3):
        assert (await proxy.get(f"/2026-07/echo/free-{i}")).status == 200
    criteo.rate_limit, criteo.rate_window_seconds = 2, 60
    criteo.rate_window_start = time.time()
    assert (await proxy.get("/2026-07/echo/metered-1")).status == 200  # says: 1 left
    assert (await proxy.get("/2026-07/echo/metered-2")).status == 200  # says: 0 left
    refused = await proxy.get("/2026-07/echo/metered-3")
    assert refused.status == 429
    assert refused.headers["X-Criteo-Proxy-Error"] == "rate_limited"
    assert criteo.throttled == 0  # Criteo never had to refuse anything
    assert sum(criteo.rate_counts.values()) == 2
    assert len(criteo.requests) == 5


async def test_answers_that_overtake_each_other_keep_the_lower_count() -> None:
    window = Window("api", clock=lambda: 1000.0)
    await window.acquire(30)
    window.answered(metered(10, 9, 1001))
    await window.acquire(30)
    await window.acquire(30)
    window.answered(metered(10, 7, 1001))  # the second send's answer comes first
    window.answered(metered(10, 8, 1001))  # then the first one's, counted before it
    assert window.snapshot().remaining == 7


async def test_a_late_answer_from_an_ended_window_does_not_bring_it_back() -> None:
    now = [1000.0]
    window = Window("api", clock=lambda: now[0])
    await window.acquire(30)
    window.answered(metered(3, 2, 1001))
    await window.acquire(30)  # still in flight when the window ends
    now[0] = 1002.0
    await window.acquire(30)  # the new window's first call
    window.answered(metered(3, 2, 1003))
    window.answered(metered(3, 1, 1001))  # the late one: counted in the old window
    snapshot = window.snapshot()
    assert (snapshot.reset_at, snapshot.remaining) == (1003.0, 2)
