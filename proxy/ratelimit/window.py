"""One of Criteo's rate-limit windows: who may send now, who waits, and for how long.

Criteo answers with ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and
``x-ratelimit-reset`` (epoch seconds), and with a 429 once the window is spent;
it sends no ``Retry-After``. Tools behind the proxy cannot handle a 429, so the
proxy paces instead: it learns each window from the answers, counts its own
sends against it, and makes the rest wait, released in arrival order. What a
window allows is ``quota``'s bookkeeping; when others with the same credentials
spend it too, ``contention`` spreads our sends; here is the line that waits.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from proxy.coordination.outcomes import Unavailable
from proxy.ratelimit.fleet_line import FleetLine, FleetRateLimited
from proxy.ratelimit.quota import Quota, WindowState
from proxy.ratelimit.window_headers import LIMIT_HEADER, read_window

if TYPE_CHECKING:  # the fleet's libraries load only with coordination on
    pass

log = logging.getLogger("criteo_proxy.pacing")

# How long requests wait for the answer that will tell them the window, when none is
# known yet (the first answer, or the first after a reset): then they go anyway.
_ANSWER_WAIT_SECONDS: Final = 1.0


class RateLimited(Exception):
    """The wait for a slot would exceed rate_limit.max_wait."""

    def __init__(self, reset_at: float) -> None:
        super().__init__(f"rate limit window resets at {reset_at:.0f}")
        self.reset_at = reset_at


@dataclass(frozen=True, slots=True)
class Send:
    """A slot taken: how long it waited, and its number in the fleet's window, if any."""

    waited_seconds: float
    fleet_number: int | None


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
    """One rate-limit bucket: the line of requests waiting for what its quota allows.

    Until the first answer nothing is known: one request goes as a probe and
    the others wait for its answer. An answer without rate-limit headers means
    this bucket is not metered: everything passes, at the cost of one check a
    send and one header lookup an answer, until an answer carries the headers.
    """

    def __init__(self, name: str, *, clock: Callable[[], float]) -> None:
        self.name = name
        self._clock = clock
        self._quota = Quota(clock=clock)
        self._metered = True  # until an answer says otherwise
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self.throttled = {"seen": 0, "retried": 0, "refused": 0}
        self._warned_implausible = False
        self.fleet: FleetLine | None = None  # DESIGN 11: the window is the fleet's, on Redis

    def snapshot(self) -> WindowSnapshot:
        quota = self._quota
        fleet = self.fleet
        if fleet is not None and fleet.active and fleet.last is not None:
            last = fleet.last  # the fleet's window, as Redis last told this member
            reset_in = last.reset_in_seconds
            return WindowSnapshot(
                bucket=self.name,
                metered=self._metered,
                limit=last.limit,
                remaining=last.left,
                reset_at=None if reset_in is None else fleet.last_seen_at + reset_in,
                waiting=self.waiting,
                throttled=dict(self.throttled),
            )
        return WindowSnapshot(
            bucket=self.name,
            metered=self._metered,
            limit=None if quota.state is None else quota.state.limit,
            remaining=quota.left,
            reset_at=quota.reset_at,
            waiting=self.waiting,
            throttled=dict(self.throttled),
        )

    @property
    def waiting(self) -> int:
        local = sum(1 for w in self._waiters if not w.done())
        return local + (0 if self.fleet is None else self.fleet.waiting)

    @property
    def metered(self) -> bool:
        """False once an answer came without rate-limit headers: acquire() would not wait."""
        return self._metered

    def _may_send(self) -> bool:
        return not self._metered or self._quota.may_send()

    def wait_seconds(self) -> float:
        """How long a newcomer would wait now, at the least (0 while waiting for an answer)."""
        if not self._metered:
            return 0.0
        released_at = self._quota.released_at()
        return 0.0 if released_at is None else max(0.0, released_at - self._clock())

    async def take(self, max_wait_seconds: float) -> Send:
        """Wait for a slot, the fleet's while it answers; RateLimited if it would be too long."""
        fleet = self.fleet
        if fleet is not None and self._metered and fleet.active:
            try:
                send = await fleet.take(max_wait_seconds)
            except FleetRateLimited as exc:
                raise RateLimited(exc.reset_at) from None
            except Unavailable:
                pass  # said once by the link: this member paces alone until Redis returns
            else:
                return Send(send.waited_seconds, send.number)
        return Send(await self.acquire(max_wait_seconds), None)

    async def acquire(self, max_wait_seconds: float) -> float:
        """Wait for a slot; returns the seconds waited. RateLimited if it would be too long."""
        if not self._metered:
            return 0.0
        if not self._waiters and self._quota.may_send():
            self._quota.note_send()
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
        return self._quota.reset_at is not None

    def _reset_at(self) -> float:
        reset_at = self._quota.reset_at
        return self._clock() if reset_at is None else reset_at

    def answered(self, headers: Mapping[str, str] | None, send: Send | None = None) -> None:
        """An answer (or a failure: None) came back for one of our sends (SEND: its slot)."""
        if send is not None and send.fleet_number is not None and self.fleet is not None:
            self._answered_to_fleet(headers, send.fleet_number, self.fleet)
            return
        if not self._metered:
            if headers is None or LIMIT_HEADER not in headers:
                return  # still not metered: this one lookup is all it costs
            self._metered = True  # the sends in flight went uncounted: a one-off error
        state = None if headers is None else self._read_window(headers)
        if self._quota.answered(state):
            log.info(
                "rate-limit window %s: Criteo counts calls that are not ours (another "
                "process with these credentials?); spreading sends over each window",
                self.name,
            )
        if state is None and headers is not None and not self._quota.is_current:
            # No window before, or only one whose reset has passed and that no answer
            # renewed: the upstream does not meter (any more). Pacing it on a window
            # that is gone would hold every request for an answer that never says.
            self._metered = False
            self._quota.forget()
        self._release()

    def _answered_to_fleet(
        self, headers: Mapping[str, str] | None, number: int, fleet: FleetLine
    ) -> None:
        """Tell the fleet what Criteo said to its send NUMBER (in the background: the
        client's answer does not wait for Redis)."""
        if headers is None:  # a failure: no longer in flight, says nothing of the window
            fleet.answered_without_window(number, unmetered=False)
            return
        if LIMIT_HEADER not in headers:
            self._metered = False  # not metered after all: this member stops asking
            fleet.answered_without_window(number, unmetered=True)
            return
        window = self._read_window(headers)
        if window is None:
            fleet.answered_without_window(number, unmetered=False)
        else:
            fleet.answered(number, window)

    def _read_window(self, headers: Mapping[str, str]) -> WindowState | None:
        window = read_window(headers, now=self._clock())
        if isinstance(window, str):
            if not self._warned_implausible:
                self._warned_implausible = True
                log.warning(
                    "rate-limit window %s: ignoring implausible rate-limit headers (%s); "
                    "only plausible answers pace this bucket (said once)",
                    self.name,
                    window,
                )
            return None
        return window

    def _note_send(self) -> None:
        if self._metered:
            self._quota.note_send()

    def _unsend(self) -> None:
        self._quota.unsend()
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
        if not self._waiters or not self._metered:
            return
        released_at = self._quota.released_at()
        if released_at is None:
            return
        delay = max(0.0, released_at - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_release)

    def _on_release(self) -> None:
        self._timer = None
        self._release()
