"""Several proxies on one Criteo window (issue 14): others seen in Criteo's counts, and
sends spread over what is left; and an unmetered bucket's fast path (issue 15)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from aiohttp.test_utils import TestClient

from proxy.contention import Contention
from proxy.fake_criteo import FakeCriteo
from proxy.pacing import Window
from proxy.quota import Quota, WindowState
from tests.conftest import StartProxy


def window_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(reset),
    }


def test_a_window_spent_only_by_us_is_never_shared() -> None:
    contention = Contention()
    for counted in range(1, 6):
        became = contention.answered(
            limit=10, remaining=10 - counted, reset_at=1010.0, in_flight=0, now=1000.0
        )
        assert not became
    assert not contention.shared


def test_calls_that_are_not_ours_make_the_window_shared_once() -> None:
    contention = Contention()
    # Our first answer: Criteo counted 4 calls, one of them ours.
    assert contention.answered(limit=10, remaining=6, reset_at=1010.0, in_flight=0, now=1000.0)
    assert contention.shared
    assert contention.others_since_answer(1000.0) == 3.0  # they sent 3 for our 1
    # Seen again in the same window: shared already, not "turned" shared a second time.
    assert not contention.answered(limit=10, remaining=4, reset_at=1010.0, in_flight=0, now=1001.0)


def test_sharing_is_forgotten_after_a_whole_window_without_a_sign() -> None:
    contention = Contention()
    contention.answered(limit=10, remaining=6, reset_at=1010.0, in_flight=0, now=1000.0)
    contention.answered(limit=10, remaining=9, reset_at=1020.0, in_flight=0, now=1011.0)
    assert contention.shared  # the window after the sign stays shared
    contention.answered(limit=10, remaining=9, reset_at=1030.0, in_flight=0, now=1021.0)
    assert not contention.shared


def test_sends_are_spread_evenly_over_what_is_left_of_the_window() -> None:
    contention = Contention()
    assert contention.next_send_at(left=4, reset_at=1010.0) == -math.inf  # nothing sent yet
    contention.note_send(1000.0)
    assert contention.next_send_at(left=4, reset_at=1010.0) == 1002.0  # 10 s over 4 + 1


def test_a_shared_window_lets_the_next_send_go_only_at_its_turn() -> None:
    now = [1000.0]
    quota = Quota(clock=lambda: now[0])
    assert quota.may_send()  # before any answer: the first request goes straight through
    quota.note_send()
    assert not quota.may_send()  # the others wait for the probe's answer
    # Criteo counted 6 calls, one of ours: five were someone else's.
    assert quota.answered(WindowState(limit=20, remaining=14, reset_at=1010.0))
    assert not quota.may_send()  # spread: not all 14 at once
    released_at = quota.released_at()
    assert released_at is not None
    assert 1000.0 < released_at < 1010.1
    now[0] = released_at
    assert quota.may_send()


async def test_an_unmetered_bucket_is_not_counted_until_an_answer_carries_a_window() -> None:
    now = [1000.0]
    window = Window("api", clock=lambda: now[0])
    assert await window.acquire(30) == 0.0
    window.answered({"Content-Type": "application/json"})  # no rate-limit headers
    for _ in range(100):
        assert await window.acquire(30) == 0.0
        window.answered({})
    assert window.snapshot().metered is False
    # Criteo starts metering: the window is known again, and it is kept.
    await window.acquire(30)
    window.answered(window_headers(2, 0, 1010.0))
    snapshot = window.snapshot()
    assert snapshot.metered is True
    assert (snapshot.limit, snapshot.remaining) == (2, 0)
    waiter = asyncio.create_task(window.acquire(30))
    await asyncio.sleep(0)
    assert window.waiting == 1  # nothing left until the reset
    waiter.cancel()


async def test_two_proxies_on_one_app_window_pass_no_429_to_their_clients(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    """Same credentials, one Criteo window of 4 calls a second, bursts from both sides."""
    criteo.rate_limit, criteo.rate_window_seconds = 4, 1
    first = await start_proxy(rate_limit={"max_wait": 30})
    second = await start_proxy(rate_limit={"max_wait": 30})
    statuses: list[int] = []

    async def burst(proxy: TestClient[Any, Any], tag: str) -> None:
        responses = await asyncio.gather(*(proxy.get(f"/2025-10/echo/{tag}{i}") for i in range(8)))
        statuses.extend(r.status for r in responses)

    await asyncio.gather(burst(first, "a"), burst(second, "b"))
    assert statuses == [200] * 16
    served = {seen.raw_path for seen in criteo.requests}
    assert served == {f"/2025-10/echo/{tag}{i}" for tag in "ab" for i in range(8)}
