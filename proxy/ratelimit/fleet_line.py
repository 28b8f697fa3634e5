"""This member's line for the fleet's window of one bucket (DESIGN 11).

The fleet's window is in Redis (``coordination.windows``); here, the member's own
requests wait for it in arrival order: the one at the head of the line asks Redis for
a slot, and waits for the reset (or for the probe's answer) before asking again. The
rules of DESIGN 3.5 hold for the fleet as a whole: ``max_wait`` bounds every wait, and
before any answer the others wait for the probe's, at most a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from proxy.coordination.outcomes import Unavailable
from proxy.ratelimit.quota import WindowState

if TYPE_CHECKING:  # the fleet's libraries load only with coordination on
    from proxy.coordination.member import Member
    from proxy.coordination.windows import FleetSlot

_ANSWER_WAIT_SECONDS: Final = 1.0  # as for a lone proxy: then the request goes anyway
_ANSWER_POLL_SECONDS: Final = 0.05
# A spent window is asked again this often while its reset is further away: the other
# members' answers may free a slot that the sends counted in flight were holding.
_RECHECK_SECONDS: Final = 0.2


class FleetRateLimited(Exception):
    """The fleet's window frees a slot later than max_wait allows."""

    def __init__(self, reset_at: float) -> None:
        super().__init__(f"the fleet's window resets at {reset_at:.0f}")
        self.reset_at = reset_at  # epoch seconds, on this member's clock


@dataclass(frozen=True, slots=True)
class FleetSend:
    waited_seconds: float
    number: int | None  # the fleet's number for this send (None: it went unannounced)


class FleetLine:
    def __init__(self, bucket: str, member: Member) -> None:
        self.bucket = bucket
        self._member = member
        self._head = asyncio.Lock()  # FIFO: the line's order is the lock's
        self.waiting = 0
        self.last: FleetSlot | None = None  # the fleet's window as last seen, for the console
        self.last_seen_at = 0.0  # epoch seconds
        self._answering: set[asyncio.Task[None]] = set()
        self._unmetered = False  # an answer came without rate-limit headers: nobody waits
        self._answered = asyncio.Event()  # set as each answer of ours reaches the fleet

    @property
    def active(self) -> bool:
        return self._member.active

    async def take(self, max_wait_seconds: float) -> FleetSend:
        """A slot in the fleet's window; FleetRateLimited past MAX_WAIT_SECONDS, and
        ``Unavailable`` when Redis fails (the caller then paces alone)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.waiting += 1
        try:
            async with asyncio.timeout(max_wait_seconds):
                in_line = self._head.locked()  # others ahead: this one waits its turn
                await self._head.acquire()
        except TimeoutError:
            raise FleetRateLimited(self._reset_at()) from None
        finally:
            self.waiting -= 1
        try:
            return await self._take_at_head(started, max_wait_seconds, in_line=in_line)
        finally:
            self._head.release()

    async def _take_at_head(
        self, started: float, max_wait_seconds: float, *, in_line: bool
    ) -> FleetSend:
        loop = asyncio.get_running_loop()
        waiting_for_answer_since: float | None = None
        asked_before = in_line
        while True:
            if self._unmetered:
                return FleetSend(loop.time() - started, None)
            slot = await self._member.windows.take(self.bucket)
            self.last, self.last_seen_at = slot, time.time()
            waited = loop.time() - started
            if slot.granted:
                # A slot at the first ask waited for nothing but Redis's answer: no wait.
                return FleetSend(waited if asked_before else 0.0, slot.send)
            asked_before = True
            if slot.wait_seconds is not None:  # the window is spent until its reset
                if waited + slot.wait_seconds > max_wait_seconds:
                    raise FleetRateLimited(time.time() + slot.wait_seconds)
                # Until the reset, or sooner: an answer may show that calls counted in
                # flight were counted by Criteo already, and free a slot of this window.
                await self._next_answer(min(slot.wait_seconds, _RECHECK_SECONDS))
                continue
            # A probe is out, or the window is spent and its reset unknown: an answer
            # will tell; past a second the request goes anyway, as before any answer.
            now = loop.time()
            if waiting_for_answer_since is None:
                waiting_for_answer_since = now
            elif now - waiting_for_answer_since >= _ANSWER_WAIT_SECONDS:
                return FleetSend(waited, None)
            await self._next_answer(_ANSWER_POLL_SECONDS)

    async def _next_answer(self, timeout_seconds: float) -> None:
        """Until this member hears an answer told to the fleet, or TIMEOUT_SECONDS pass
        (the other members' answers are heard by asking again)."""
        self._answered.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_seconds):
                await self._answered.wait()

    def answered(self, number: int, window: WindowState) -> None:
        """Criteo's word on send NUMBER, to Redis in the background (a client's answer
        never waits for Redis; a failure there is the link's to report)."""
        self._in_background(self._answer(number, window))

    def answered_without_window(self, number: int, *, unmetered: bool) -> None:
        """Send NUMBER failed, or was answered without rate-limit headers (UNMETERED:
        then this member's line is released too); either way it is no longer in flight,
        and a probe waited for has its answer."""
        if unmetered:
            self._unmetered = True
        self._in_background(self._member.windows.answered(self.bucket, send=number))

    def _in_background(self, call: Coroutine[object, object, None]) -> None:
        async def quietly() -> None:
            with contextlib.suppress(Unavailable):
                await call

        task = asyncio.get_running_loop().create_task(quietly())
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, number: int, window: WindowState) -> None:
        self._unmetered = False
        await self._member.windows.answered(
            self.bucket,
            send=number,
            limit=window.limit,
            remaining=window.remaining,
            reset_at=window.reset_at,
        )
        self._answered.set()  # the head of the line asks again

    def _reset_at(self) -> float:
        last = self.last
        if last is None or last.reset_in_seconds is None:
            return time.time()
        return self.last_seen_at + last.reset_in_seconds
