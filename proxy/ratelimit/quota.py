"""What one of Criteo's windows lets us send: its last word, and our sends since.

Bookkeeping on a clock, without asyncio: ``pacing.Window`` puts the waiting
line around it. An answer says how many calls the window has left and when it
resets; our sends still unanswered may not be counted in it yet, so they count
against what is left. Once the reset has passed, Criteo has forgotten the old
sends: the window is full again until an answer says more. When Criteo's
counts show that others spend the window too (``contention``), our sends are
spread over what is left of it, and a new window starts with one probe.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from proxy.ratelimit.contention import Contention

# Released this long after the announced reset: our clock and Criteo's differ a little,
# and a request that arrives a hair early is a certain 429.
RESET_MARGIN_SECONDS: Final = 0.1


@dataclass(frozen=True, slots=True)
class WindowState:
    limit: int
    remaining: int
    reset_at: float  # epoch seconds; inf once it has passed, until an answer names the next


class Quota:
    """Criteo's last word on one window, and our sends it may not have counted yet."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.state: WindowState | None = None
        self._probing = False  # one send is out to learn the window; the others wait for it
        self._unanswered = 0  # sent and not yet answered
        self._sent_since_update = 0
        self._latest_reset_at = -math.inf  # the newest window an answer named
        self._contention = Contention()

    @property
    def left(self) -> int | None:
        """Sends the window still allows as far as we know, or None before any answer."""
        state = self.state
        return None if state is None else max(0, state.remaining - self._sent_since_update)

    @property
    def reset_at(self) -> float | None:
        """When the known window resets (epoch seconds), or None."""
        state = self.state
        return state.reset_at if state is not None and math.isfinite(state.reset_at) else None

    @property
    def is_current(self) -> bool:
        """Whether an answer named the window we count in (not one renewed by the clock)."""
        self._renew_if_reset()
        state = self.state
        return state is not None and math.isfinite(state.reset_at)

    def may_send(self) -> bool:
        return self._clock() >= self._next_send_at()

    def released_at(self) -> float | None:
        """When the clock alone lets the next send go; None while only an answer can."""
        at = self._next_send_at()
        return None if math.isnan(at) else max(at, self._clock())

    def _next_send_at(self) -> float:
        """The earliest time the next send may go: -inf for now, NaN for after an answer."""
        self._renew_if_reset()
        state = self.state
        if state is None:
            return math.nan if self._probing else -math.inf
        left = state.remaining - self._sent_since_update
        reset_at = state.reset_at + RESET_MARGIN_SECONDS
        if left <= 0:
            return reset_at if math.isfinite(reset_at) else math.nan
        contention = self._contention
        if not contention.shared:
            return -math.inf
        if math.isinf(state.reset_at):
            # A new window that others share: one probe learns it, the rest wait for it.
            return math.nan if self._probing else -math.inf
        # What we know dates from our latest answer: one call is kept back for each
        # other sharer, who has likely sent about once since.
        sharers = contention.sharers
        reserve = sharers - 1
        likely_left = left - reserve
        if likely_left < 1:
            return reset_at  # or sooner, when an answer says there is more
        return contention.next_send_at(left=likely_left, reset_at=reset_at)

    def _renew_if_reset(self) -> None:
        state = self.state
        if state is not None and self._clock() >= state.reset_at + RESET_MARGIN_SECONDS:
            self.state = WindowState(limit=state.limit, remaining=state.limit, reset_at=math.inf)
            self._sent_since_update = 0

    def note_send(self) -> None:
        self._unanswered += 1
        self._sent_since_update += 1
        state = self.state
        if state is None or (math.isinf(state.reset_at) and self._contention.shared):
            self._probing = True
        self._contention.note_send(self._clock())

    def unsend(self) -> None:
        """A send that was granted but will not happen (its client went away)."""
        self._unanswered = max(0, self._unanswered - 1)
        self._sent_since_update = max(0, self._sent_since_update - 1)
        self._probing = False

    def forget(self) -> None:
        """No window after all (the bucket is not metered): nothing of ours is counted."""
        self.state = None
        self._unanswered = self._sent_since_update = 0
        self._probing = False

    def answered(self, state: WindowState | None) -> bool:
        """One of our sends was answered, announcing STATE (None: no window, or a failure).
        True when this answer is the first sign, in a while, of calls that are not ours."""
        self._unanswered = max(0, self._unanswered - 1)
        if state is None:
            self._probing = False
            self._contention.answered_without_window()
            return False
        known = self.state
        if known is not None and (
            state.reset_at < self._latest_reset_at
            or state.reset_at + RESET_MARGIN_SECONDS <= self._clock()
        ):
            # A late answer from a window that is over: counted there, not in this one.
            self._sent_since_update = max(0, self._sent_since_update - 1)
            return False
        self._probing = False
        if known is not None and known.reset_at == state.reset_at:
            # Answers may overtake each other; within one window Criteo's count only grows.
            state = WindowState(
                limit=state.limit,
                remaining=min(known.remaining, state.remaining),
                reset_at=state.reset_at,
            )
        self.state = state
        self._latest_reset_at = state.reset_at
        # Sends still in flight may not be counted in this answer: assume they are not.
        self._sent_since_update = self._unanswered
        return self._contention.answered(
            limit=state.limit,
            remaining=state.remaining,
            reset_at=state.reset_at,
            in_flight=self._unanswered,
        )
