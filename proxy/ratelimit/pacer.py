"""Criteo's rate-limit buckets: which window a path draws from, and each bucket's window.

Criteo meters report endpoints apart from the rest (40 vs 250 calls a minute); each
bucket is a ``window.Window``, shared with the fleet when coordination is on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from proxy.ratelimit.fleet_line import FleetLine
from proxy.ratelimit.quota import RESET_MARGIN_SECONDS
from proxy.ratelimit.window import Window, WindowSnapshot
from proxy.ratelimit.window_headers import parse_window

if TYPE_CHECKING:  # the fleet's libraries load only with coordination on
    from proxy.coordination.member import Member


def bucket_for(path: str) -> str:
    """Which of Criteo's windows a path draws from: it meters report endpoints apart from
    the rest (40 vs 250 calls a minute)."""
    lowered = path.lower()  # two plain tests, no generator: this runs for every request
    return "reports" if "/statistics/" in lowered or "/report" in lowered else "api"


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
        self._member: Member | None = None

    def window_for(self, path: str) -> Window:
        name = bucket_for(path)
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = Window(name, clock=self._clock)
            if self._member is not None:
                window.fleet = FleetLine(name, self._member)
        return window

    def share_with(self, member: Member) -> None:
        """Pace on the fleet's windows while Redis answers (DESIGN 11)."""
        self._member = member
        for name, window in self._windows.items():
            window.fleet = FleetLine(name, member)

    @property
    def waiting(self) -> int:
        return sum(window.waiting for window in self._windows.values())

    def snapshots(self) -> list[WindowSnapshot]:
        return [window.snapshot() for window in self._windows.values()]

    def seconds_until_reset(self, headers: Mapping[str, str]) -> float | None:
        """For a 429: how long until its window resets, if it says so plausibly."""
        now = self._clock()
        state = parse_window(headers, now=now)
        if state is None:
            return None
        return max(0.0, state.reset_at + RESET_MARGIN_SECONDS - now)
