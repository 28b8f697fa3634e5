"""What an answer says of its rate-limit window: Criteo's ``x-ratelimit-*`` headers,
read as a window only when one of Criteo's minute-long windows could have sent them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from proxy.ratelimit.quota import WindowState

LIMIT_HEADER: Final = "x-ratelimit-limit"
REMAINING_HEADER: Final = "x-ratelimit-remaining"
RESET_HEADER: Final = "x-ratelimit-reset"

# Criteo's windows last a minute: a reset further ahead is not one of them (DESIGN 11
# holds the fleet to the same bound), and one long past is no news of the current window.
MAX_RESET_AHEAD_SECONDS: Final = 60.0
MAX_RESET_AGO_SECONDS: Final = 60.0
_COUNT: Final = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit() and int() take more
_EPOCH_SECONDS: Final = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")


def parse_window(headers: Mapping[str, str], *, now: float | None = None) -> WindowState | None:
    """The window an answer announces, or None if it carries none that can be trusted."""
    window = read_window(headers, now=now)
    return window if isinstance(window, WindowState) else None


def read_window(
    headers: Mapping[str, str], *, now: float | None = None
) -> WindowState | str | None:
    """The window an answer announces; None without rate-limit headers; for headers that
    no window of Criteo's could carry, why they are implausible.

    Implausible: not plain decimal (``int()`` would take ``²`` or Arabic digits),
    ``remaining`` above ``limit``, or, given NOW (epoch seconds), a reset long past or
    more than a minute ahead (one in milliseconds, or a year ahead, would hold the
    bucket for good). An answer with ``limit`` alone is read as none, as before.
    """
    limit_text = headers.get(LIMIT_HEADER)
    if limit_text is None:
        return None  # not metered: the common case costs this one lookup
    remaining_text = headers.get(REMAINING_HEADER)
    reset_text = headers.get(RESET_HEADER)
    if remaining_text is None or reset_text is None:
        return None
    if not (_COUNT.fullmatch(limit_text) and _COUNT.fullmatch(remaining_text)):
        return "counts that are not whole numbers"
    if not _EPOCH_SECONDS.fullmatch(reset_text):
        return "a reset that is not epoch seconds"
    limit, remaining, reset_at = int(limit_text), int(remaining_text), float(reset_text)
    if remaining > limit:
        return f"{remaining} remaining of {limit}"
    if now is not None and not (
        now - MAX_RESET_AGO_SECONDS <= reset_at <= now + MAX_RESET_AHEAD_SECONDS
    ):
        return f"a reset {reset_at - now:+.0f} s from now"
    return WindowState(limit=limit, remaining=remaining, reset_at=reset_at)
