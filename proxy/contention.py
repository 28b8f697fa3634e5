"""Other senders on one of Criteo's windows: seen in Criteo's counts, met by spreading.

Several proxies (or other tools) with one app's credentials draw on one window,
and none of them sees the others' sends except in its own answers: Criteo's
``x-ratelimit-remaining`` falls faster than its own sends. A proxy that believed
it was alone would spend the whole ``remaining`` at once, as would the others,
and their sends past it would meet 429s.

Once the counts show others, a proxy spreads its sends over what is left of the
window: the next goes at ``last + (reset - last) / (left + 1)``. If every
sharer does so, the window drains as ``(time left / window)^n`` for n busy
sharers instead of being overdrawn at once. What a proxy knows of ``left`` dates
from its last answer, though, and near the end the others' sends since then are
as many as what is left: so it also counts the others as going on at the rate
Criteo's counts showed in this window. That holds for the window the sign was
seen in and the next one; after a whole window without one, it sends in bursts
again.
"""

from __future__ import annotations

import math
from typing import Final

# The window a sign of others was seen in and this many after it stay shared.
_SHARED_WINDOWS_AFTER: Final = 1


class Contention:
    """Whether others spend a window with us, and how fast, from our own answers."""

    def __init__(self) -> None:
        self._reset_at = -math.inf  # the window being counted (its reset, epoch seconds)
        self._counted = 0  # our answers naming that window: our calls Criteo counted in it
        self._unknown = 0  # our sends in it whose answer named no window (or that failed)
        self._quiet_windows = math.inf  # windows since the last one with a sign of others
        self._last_send_at = -math.inf
        self._latest: tuple[float, int] | None = None  # when, and the others' calls by then
        self._sharers = 1.0  # all calls in the window over ours: how many send like us

    @property
    def shared(self) -> bool:
        return self._quiet_windows <= _SHARED_WINDOWS_AFTER

    def answered(
        self, *, limit: int, remaining: int, reset_at: float, in_flight: int, now: float
    ) -> bool:
        """One answer to our sends: does it show calls that are not ours? IN_FLIGHT are our
        sends still unanswered (Criteo may have counted them already). Returns True when
        this answer turned the window shared."""
        if reset_at < self._reset_at:
            return False  # a late answer from a window that is over
        if reset_at > self._reset_at:
            self._reset_at = reset_at
            self._counted = self._unknown = 0
            self._latest = None
            self._quiet_windows += 1
        self._counted += 1
        others = max(0, (limit - remaining) - self._counted - self._unknown - in_flight)
        if self._latest is not None:
            others = max(others, self._latest[1])  # a count only grows within a window
        self._latest = (now, others)
        self._sharers = (others + self._counted) / self._counted
        if others == 0:
            return False
        was_shared = self.shared
        self._quiet_windows = 0
        return not was_shared

    def answered_without_window(self) -> None:
        """An answer that named no window, or a failure: Criteo may have counted the call."""
        self._unknown += 1

    def others_since_answer(self, now: float) -> float:
        """The calls others have likely made since our latest answer: about one each."""
        return self._sharers - 1

    def note_send(self, now: float) -> None:
        self._last_send_at = now

    def next_send_at(self, *, left: float, reset_at: float) -> float:
        """When the next of LEFT sends may go, spread evenly until RESET_AT."""
        last = self._last_send_at
        if not math.isfinite(last) or last >= reset_at:
            return -math.inf
        return last + (reset_at - last) / (left + 1)
