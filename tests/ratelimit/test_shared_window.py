"""Several senders on one Criteo window (issue 14): seen in Criteo's counts, met by spreading."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from proxy.fakes.criteo import FakeCriteo
from proxy.ratelimit.contention import Contention
from proxy.ratelimit.quota import RESET_MARGIN_SECONDS, Quota, WindowState
from tests.conftest import ManualClock, StartProxy

RESET = 1_800_000_010.0  # the window of the ManualClock's start (1_800_000_000)


def test_our_own_calls_in_flight_are_not_taken_for_others() -> None:
    contention = Contention()
    assert not contention.answered(limit=10, remaining=9, reset_at=RESET, in_flight=0)
    # Five more sent at once; Criteo counted all five before the first answer came back.
    for in_flight in (4, 3, 2, 1, 0):
        assert not contention.answered(limit=10, remaining=4, reset_at=RESET, in_flight=in_flight)
    assert not contention.shared
    assert contention.sharers == 1.0


def test_a_send_whose_answer_said_nothing_is_not_taken_for_others() -> None:
    contention = Contention()
    contention.answered(limit=10, remaining=9, reset_at=RESET, in_flight=0)
    contention.answered_without_window()  # timed out: Criteo may have counted it
    assert not contention.answered(limit=10, remaining=7, reset_at=RESET, in_flight=0)
    assert not contention.shared


def test_calls_that_are_not_ours_share_the_window_for_it_and_the_next_one() -> None:
    contention = Contention()
    assert contention.answered(limit=10, remaining=6, reset_at=RESET, in_flight=0)
    assert contention.shared
    assert contention.sharers == 4.0  # 4 calls counted, 1 of them ours
    assert not contention.answered(limit=10, remaining=5, reset_at=RESET, in_flight=0)
    assert contention.sharers == 2.5  # 5 counted, 2 ours
    # The next window: still shared, and until it says more, the last estimate holds.
    assert not contention.answered(limit=10, remaining=9, reset_at=RESET + 10, in_flight=0)
    assert contention.shared
    # A whole window with no sign of others, and the one after it: alone again.
    contention.answered(limit=10, remaining=9, reset_at=RESET + 20, in_flight=0)
    assert not contention.shared
    assert contention.sharers == 1.0


def test_a_late_answer_from_an_ended_window_says_nothing_of_others() -> None:
    contention = Contention()
    contention.answered(limit=10, remaining=9, reset_at=RESET + 10, in_flight=0)
    assert not contention.answered(limit=10, remaining=0, reset_at=RESET, in_flight=0)
    assert not contention.shared


def test_sends_are_spread_evenly_until_the_reset() -> None:
    contention = Contention()
    assert contention.next_send_at(left=4, reset_at=110.0) == -float("inf")  # never sent
    contention.note_send(100.0)
    assert contention.next_send_at(left=4, reset_at=110.0) == 102.0
    assert contention.next_send_at(left=1, reset_at=110.0) == 105.0


def shared_quota(clock: ManualClock, *, remaining: int, limit: int = 10) -> Quota:
    """A quota whose first answer shows others: limit - remaining - 1 calls not ours."""
    quota = Quota(clock=clock)
    assert quota.may_send()
    quota.note_send()
    assert not quota.may_send()  # the probe is out: the others wait for its answer
    assert quota.released_at() is None
    quota.answered(WindowState(limit=limit, remaining=remaining, reset_at=RESET))
    return quota


def test_a_lone_sender_still_sends_its_burst_at_once(clock: ManualClock) -> None:
    quota = Quota(clock=clock)
    quota.note_send()
    quota.answered(WindowState(limit=10, remaining=9, reset_at=RESET))
    for _ in range(9):
        assert quota.may_send()
        quota.note_send()
    assert not quota.may_send()
    assert quota.released_at() == RESET + RESET_MARGIN_SECONDS


def test_a_shared_window_spreads_sends_over_what_is_left_of_it(clock: ManualClock) -> None:
    quota = shared_quota(clock, remaining=7)  # 2 calls not ours: 3 sharers
    # 7 left, 2 kept back for the other two: 5 spread over the 10.1 s to the reset.
    expected = clock.now + (RESET + RESET_MARGIN_SECONDS - clock.now) / 6
    assert not quota.may_send()
    assert quota.released_at() == pytest.approx(expected)
    clock.advance(expected - clock.now)
    assert quota.may_send()
    quota.note_send()
    assert not quota.may_send()
    released_at = quota.released_at()
    assert released_at is not None
    assert released_at - clock.now == pytest.approx((RESET + RESET_MARGIN_SECONDS - clock.now) / 5)


def test_a_shared_window_keeps_one_call_back_for_each_other_sharer(clock: ManualClock) -> None:
    quota = shared_quota(clock, remaining=2)  # 7 calls not ours: 8 sharers
    clock.advance(5)
    assert not quota.may_send()  # 2 left, and the others have likely taken them by now
    assert quota.released_at() == RESET + RESET_MARGIN_SECONDS


def test_a_new_window_that_others_share_starts_with_one_probe(clock: ManualClock) -> None:
    quota = shared_quota(clock, remaining=0)  # spent by others
    assert quota.released_at() == RESET + RESET_MARGIN_SECONDS
    clock.advance(RESET + RESET_MARGIN_SECONDS - clock.now)
    assert quota.may_send()
    quota.note_send()
    assert not quota.may_send()  # the rest wait for what the probe learns
    assert quota.released_at() is None
    quota.answered(WindowState(limit=10, remaining=5, reset_at=RESET + 10))
    assert quota.reset_at == RESET + 10
    released_at = quota.released_at()
    assert released_at is not None
    assert clock.now < released_at < RESET + 10  # spread, no longer waiting for an answer


async def test_two_proxies_on_one_window_meet_a_burst_with_no_429_from_criteo(
    start_proxy: StartProxy, criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    """Two proxies, one app, a window of 10 calls a second and a burst of 24 at once: each
    proxy learns from Criteo's counts that the other spends the window too, and no client
    gets a 429 from Criteo."""
    criteo.rate_limit, criteo.rate_window_seconds = 10, 1
    first, second = await start_proxy(), await start_proxy()
    caplog.set_level(logging.INFO, logger="criteo_proxy.pacing")
    # One call each, then one more on the first: each answer so far shows the other's calls.
    for proxy in (first, second, first):
        assert (await proxy.get("/2026-07/advertisers/me")).status == 200
    assert caplog.text.count("calls that are not ours") == 2
    started = time.monotonic()
    burst: list[Any] = [
        proxy.get(f"/2026-07/echo/{i}") for i in range(12) for proxy in (first, second)
    ]
    responses = await asyncio.gather(*burst)
    elapsed = time.monotonic() - started
    assert [r.status for r in responses] == [200] * 24
    assert sum(criteo.rate_counts.values()) == 27  # every call accepted once
    assert all(n <= 10 for n in criteo.rate_counts.values())
    print(
        f"27 calls, 2 proxies, 10 per 1 s window: {elapsed:.2f} s, "
        f"Criteo refused {criteo.throttled}"
    )
    assert criteo.throttled <= 2, criteo.throttled  # the odd end-of-window race, replayed
