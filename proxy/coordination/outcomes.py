"""What the rest of the proxy may hear from the fleet, importable without its libraries:
the two failures that mean "act alone", and the status the console shows.

The token provider, the pacer and the console import only this module at run time, so
that a proxy without ``criteo-proxy[redis]`` installed runs as ever (redis-py and
cryptography are loaded only when ``coordination.redis_url`` is set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class Unavailable(Exception):
    """Redis did not answer in time, or at all: act alone."""


class Unreadable(Exception):
    """A value no key of ours opens: members disagree on the key (or it was tampered with)."""


CoordinationState = Literal["off", "up", "down"]


@dataclass(frozen=True, slots=True)
class CoordinationStatus:
    state: CoordinationState
    redis: str | None  # the URL without user info or query
    members: int | None  # while up
    last_error: str | None


OFF = CoordinationStatus(state="off", redis=None, members=None, last_error=None)
