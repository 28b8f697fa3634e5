"""Other senders on one of Criteo's windows: seen in Criteo's counts, met by spreading.

Several proxies (or other tools) with one app's credentials draw on one window,
and none of them sees the others' sends except in its own answers: Criteo's
``x-ratelimit-remaining`` falls faster than its own sends. A proxy that believed
it was alone would spend the whole ``remaining`` at once, as would the others,
and their sends past it would meet 429s.

The sign of others: more calls counted in the window than we have had answered
there, allowing for our sends in flight and those whose answer named no window
(a 429, which reports remaining 0, is such a sign too).

Once it is seen, a proxy spreads its sends over what is left of the window, the
next at ``last + (reset - last) / (left + 1)``: if every sharer does so, the
window drains as ``(time left / window)^n`` for n busy sharers instead of at
once. What a proxy knows of ``left`` dates from its latest answer, and the
others have likely sent about once each since (they spread too): so it keeps
back one call for each of them, counting as sharers all the window's calls over
its own. Without that, the last few calls of each window were taken twice.

A new window of a shared bucket starts with one probe: the others wait for the
answer that tells what is left of it. All this holds for the window the sign was
seen in and the next one; after a whole window without one, the proxy sends in
bursts again.
"""

from __future__ import annotations

import math
from typing import Final

# The window a sign of others was seen in and this many after it stay shared.
_SHARED_WINDOWS_AFTER: Final = 1


class Contention:
    """Whether others spend a window with us, and how many, from our own answers."""

    def __init__(self) -> None:
        self._reset_at = -math.inf  # the window being counted (its reset, epoch seconds)
        self._counted = 0  # our answers naming that window: our calls Criteo counted in it
        self._unknown = 0  # our sends in it whose answer named no window (or that failed)
        self._others = 0  # calls in it that are not ours, at the least
        self._quiet_windows = math.inf  # windows since the last one with a sign of others
        self._sharers_before = 1.0  # the estimate at the end of the previous window
        self._last_send_at = -math.inf

    @property
    def shared(self) -> bool:
        return self._quiet_windows <= _SHARED_WINDOWS_AFTER

    @property
    def sharers(self) -> float:
        """How many send like us: the window's calls over ours (1.0 when alone)."""
        if not self.shared:
            return 1.0
        if not self._counted:
            return self._sharers_before
        return (self._others + self._counted) / self._counted

    def answered(self, *, limit: int, remaining: int, reset_at: float, in_flight: int) -> bool:
        """One answer to our sends: does it show calls that are not ours? IN_FLIGHT are our
        sends still unanswered (Criteo may have counted them already). Returns True when
        this answer turned the window shared."""
        if reset_at < self._reset_at:
            return False  # a late answer from a window that is over
        if reset_at > self._reset_at:
            if self._counted:
                self._sharers_before = (self._others + self._counted) / self._counted
            self._reset_at = reset_at
            self._counted = self._unknown = self._others = 0
            self._quiet_windows += 1
        self._counted += 1
        others = (limit - remaining) - self._counted - self._unknown - in_flight
        self._others = max(self._others, others)  # a count only grows within a window
        if self._others == 0:
            return False
        was_shared = self.shared
        self._quiet_windows = 0
        return not was_shared

    def answered_without_window(self) -> None:
        """An answer that named no window, or a failure: Criteo may have counted the call."""
        self._unknown += 1

    def note_send(self, now: float) -> None:
        self._last_send_at = now

    def next_send_at(self, *, left: float, reset_at: float) -> float:
        """When the next of LEFT sends may go, spread evenly until RESET_AT."""
        last = self._last_send_at
        if not math.isfinite(last) or last >= reset_at:
            return -math.inf
        return last + (reset_at - last) / (left + 1)
