"""Criteo's rate-limit windows: who may send now, who waits, and for how long.

Criteo answers with ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and
``x-ratelimit-reset`` (epoch seconds), and with a 429 once the window is spent;
it sends no ``Retry-After``. Tools behind the proxy cannot handle a 429, so the
proxy paces instead: it learns each window from the answers, counts its own
sends against it, and makes the rest wait, released in arrival order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("criteo_proxy.pacing")

LIMIT_HEADER: Final = "x-ratelimit-limit"
REMAINING_HEADER: Final = "x-ratelimit-remaining"
RESET_HEADER: Final = "x-ratelimit-reset"

# Released this long after the announced reset: our clock and Criteo's differ a little,
# and a request that arrives a hair early is a certain 429.
_RESET_MARGIN_SECONDS: Final = 0.1
# How long requests wait for the answer that will tell them the window, when none is
# known yet (the first answer, or the first after a reset): then they go anyway.
_ANSWER_WAIT_SECONDS: Final = 1.0

# Criteo meters report endpoints apart from the rest (40 vs 250 calls a minute).
_REPORT_MARKERS: Final = ("/statistics/", "/report")


class RateLimited(Exception):
    """The wait for a slot would exceed rate_limit.max_wait."""

    def __init__(self, reset_at: float) -> None:
        super().__init__(f"rate limit window resets at {reset_at:.0f}")
        self.reset_at = reset_at


@dataclass(frozen=True, slots=True)
class WindowState:
    limit: int
    remaining: int
    reset_at: float  # epoch seconds


def parse_window(headers: Mapping[str, str]) -> WindowState | None:
    """The window an answer announces, or None if it carries no (valid) rate-limit headers."""
    try:
        limit = int(headers[LIMIT_HEADER])
        remaining = int(headers[REMAINING_HEADER])
        reset_at = float(headers[RESET_HEADER])
    except (KeyError, ValueError):
        return None
    if limit < 0 or remaining < 0 or not math.isfinite(reset_at):
        return None
    return WindowState(limit=limit, remaining=min(remaining, limit), reset_at=reset_at)


def bucket_for(path: str) -> str:
    """Which of Criteo's windows a path draws from (refined by the headers it answers with)."""
    lowered = path.lower()
    return "reports" if any(marker in lowered for marker in _REPORT_MARKERS) else "api"


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowSnapshot:
    """One bucket as the console shows it."""

    bucket: str
    metered: bool  # False once an answer came without rate-limit headers
    limit: int | None
    remaining: int | None  # as Criteo last said, less our sends it has not counted yet
    reset_at: float | None  # epoch seconds
    waiting: int
    throttled: Mapping[str, int]  # 429s: seen, retried, refused (by the proxy, max_wait)


class Window:
    """One rate-limit bucket: sends are admitted while the known window allows them.

    Until the first answer nothing is known: one request goes as a probe and
    the others wait for its answer. An answer without rate-limit headers means
    this bucket is not metered, and everything passes.
    """

    def __init__(self, name: str, *, clock: Callable[[], float]) -> None:
        self.name = name
        self._clock = clock
        self._state: WindowState | None = None
        self._metered = True  # until an answer says otherwise
        self._probing = False
        self._unanswered = 0  # sent and not yet answered
        self._sent_since_update = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self.throttled = {"seen": 0, "retried": 0, "refused": 0}

    def snapshot(self) -> WindowSnapshot:
        state = self._state
        known = state is not None and math.isfinite(state.reset_at)
        return WindowSnapshot(
            bucket=self.name,
            metered=self._metered,
            limit=None if state is None else state.limit,
            remaining=None if state is None else max(0, state.remaining - self._sent_since_update),
            reset_at=state.reset_at if known and state is not None else None,
            waiting=self.waiting,
            throttled=dict(self.throttled),
        )

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def _window_renewed(self) -> None:
        state = self._state
        if state is not None and self._clock() >= state.reset_at + _RESET_MARGIN_SECONDS:
            # A new window: Criteo forgot the old sends. The next answer will say more.
            self._state = WindowState(limit=state.limit, remaining=state.limit, reset_at=math.inf)
            self._sent_since_update = 0

    def _may_send(self) -> bool:
        if not self._metered:
            return True
        self._window_renewed()
        state = self._state
        if state is None:
            return not self._probing
        return state.remaining - self._sent_since_update > 0

    def wait_seconds(self) -> float:
        """How long a newcomer would wait now, at the least."""
        state = self._state
        if state is None or self._may_send():
            return 0.0
        if math.isinf(state.reset_at):
            return 0.0  # waiting for an answer, not for a reset
        return max(0.0, state.reset_at + _RESET_MARGIN_SECONDS - self._clock())

    async def acquire(self, max_wait_seconds: float) -> float:
        """Wait for a slot; returns the seconds waited. RateLimited if it would be too long."""
        if not self._waiters and self._may_send():
            self._note_send()
            return 0.0
        if self._knows_reset() and self.wait_seconds() > max_wait_seconds:
            raise RateLimited(self._reset_at())
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + max_wait_seconds
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self._schedule_release()
        try:
            while not waiter.done():
                # Waiting for an answer (no reset known) is short: then the request goes
                # anyway, as before the first answer. Waiting for a known reset is bounded
                # by max_wait, past which the client gets a 429 at once.
                knows_reset = self._knows_reset()
                limit = deadline if knows_reset else min(deadline, started + _ANSWER_WAIT_SECONDS)
                try:
                    async with asyncio.timeout_at(limit):
                        await asyncio.shield(waiter)
                except TimeoutError:
                    if waiter.done():
                        break
                    if knows_reset and self._knows_reset():
                        waiter.cancel()
                        self._remove(waiter)
                        raise RateLimited(self._reset_at()) from None
                    if not self._knows_reset():
                        waiter.cancel()
                        self._remove(waiter)
                        self._note_send()
                        break
        except BaseException:  # a client that went away (cancelled), or RateLimited
            if waiter.done() and not waiter.cancelled():
                self._unsend()  # granted just now, but it will not be sent
            elif not waiter.done():
                waiter.cancel()
                self._remove(waiter)
            raise
        return loop.time() - started

    def _knows_reset(self) -> bool:
        state = self._state
        return state is not None and math.isfinite(state.reset_at)

    def _reset_at(self) -> float:
        state = self._state
        return (
            state.reset_at if state is not None and math.isfinite(state.reset_at) else self._clock()
        )

    def answered(self, headers: Mapping[str, str] | None) -> None:
        """An answer (or a failure: None) came back for one of our sends."""
        self._unanswered = max(0, self._unanswered - 1)
        self._probing = False
        state = parse_window(headers) if headers is not None else None
        if state is not None:
            self._metered = True
            self._state = state
            # Sends still in flight may not be counted in this answer: assume they are not.
            self._sent_since_update = self._unanswered
        elif headers is not None and self._state is None:
            self._metered = False
        self._release()

    def _note_send(self) -> None:
        self._unanswered += 1
        self._sent_since_update += 1
        if self._state is None and self._metered:
            self._probing = True

    def _unsend(self) -> None:
        self._unanswered = max(0, self._unanswered - 1)
        self._sent_since_update = max(0, self._sent_since_update - 1)
        self._probing = False
        self._release()

    def _release(self) -> None:
        while self._waiters and self._may_send():
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            waiter.set_result(None)
            self._note_send()
        self._schedule_release()

    def _remove(self, waiter: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
        else:
            self._release()

    def _schedule_release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        state = self._state
        if not self._waiters or state is None or math.isinf(state.reset_at):
            return
        delay = max(0.0, state.reset_at + _RESET_MARGIN_SECONDS - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_reset)

    def _on_reset(self) -> None:
        self._timer = None
        self._release()


class Pacer:
    """Every bucket's window; disabled, it admits everything at once."""

    def __init__(
        self,
        *,
        enabled: bool,
        max_wait_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = enabled
        self.max_wait_seconds = max_wait_seconds
        self._clock = clock
        self._windows: dict[str, Window] = {}

    def window_for(self, path: str) -> Window:
        name = bucket_for(path)
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = Window(name, clock=self._clock)
        return window

    @property
    def waiting(self) -> int:
        return sum(window.waiting for window in self._windows.values())

    def snapshots(self) -> list[WindowSnapshot]:
        return [window.snapshot() for window in self._windows.values()]

    def seconds_until_reset(self, headers: Mapping[str, str]) -> float | None:
        """For a 429: how long until its window resets, if it says."""
        state = parse_window(headers)
        if state is None:
            return None
        return max(0.0, state.reset_at + _RESET_MARGIN_SECONDS - self._clock())
