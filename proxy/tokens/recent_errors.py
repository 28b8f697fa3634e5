"""The last few distinct token errors, for the console's token panel (DESIGN 8).

The first error is often the helpful one (``check CRITEO_CLIENT_ID /
CRITEO_CLIENT_SECRET``); the next, a timeout or a 503, would overwrite it in
``last_error``. Here it stays until five newer, different ones push it out.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Final, NamedTuple

MAX_RECENT_ERRORS: Final = 5


class RecentError(NamedTuple):
    time: float  # epoch seconds of its latest occurrence
    error: str


class RecentErrors:
    """At most MAX_RECENT_ERRORS texts, each once: a repeat only moves its time."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last_seen: collections.OrderedDict[str, float] = collections.OrderedDict()

    def note(self, error: str) -> None:
        self._last_seen.pop(error, None)
        self._last_seen[error] = self._clock()
        while len(self._last_seen) > MAX_RECENT_ERRORS:
            self._last_seen.popitem(last=False)

    def newest_first(self) -> tuple[RecentError, ...]:
        return tuple(RecentError(at, error) for error, at in reversed(self._last_seen.items()))
