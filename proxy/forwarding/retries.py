"""Transient failures (DESIGN 10): which ones may be tried again, and after how long.

A pure policy, no I/O: ``forward`` asks it after each failed send, next to the
401 and 429 rules, which keep their own places.

- A failure to connect (refused, DNS, TLS handshake, connect timeout) is
  retried for every method: nothing was sent.
- A connection lost after the request was sent but before the response
  headers, and an answer with one of ``statuses``, are retried only for
  ``methods`` (idempotent, RFC 9110 9.2.2) and only when the body can be
  sent again byte for byte.
- Waits: 0.25 s doubling, with full jitter; a ``Retry-After`` (seconds or
  HTTP-date) is honoured when it fits in what is left of ``max_delay``,
  otherwise the answer is passed on as it is.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from proxy.config.schema import TransientRetryConfig

FIRST_DELAY_SECONDS: Final = 0.25
_DELAY_SECONDS: Final = re.compile(r"[0-9]+")
_MAX_DELAY_DIGITS: Final = 12  # about 30,000 years: past it, just "never"
_MAX_HTTP_DATE_CHARS: Final = 64  # "Sunday, 06-Nov-1994 08:49:37 GMT" and room to spare

# What went wrong with one send: a failure to connect, a connection lost before the
# answer, or an answer's status.
Failure = Literal["connect", "reset"] | int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransientPolicy:
    attempts: int
    statuses: frozenset[int]
    methods: frozenset[str]
    max_delay_seconds: float

    @classmethod
    def from_config(cls, config: TransientRetryConfig) -> TransientPolicy:
        return cls(
            attempts=config.attempts,
            statuses=frozenset(config.statuses),
            methods=frozenset(config.methods),
            max_delay_seconds=config.max_delay,
        )

    def may_retry_status(self, status: int) -> bool:
        """The cheap first question, asked of every answer."""
        return self.attempts > 0 and status in self.statuses


def failure_reason(failure: Failure) -> str:
    """The metric label and log word: ``connect``, ``reset`` or the status."""
    return str(failure)


def retry_delay(
    policy: TransientPolicy,
    failure: Failure,
    *,
    method: str,
    body_replayable: bool,
    retries_done: int,
    waited_seconds: float,
    retry_after: str | None = None,
    now: float = 0.0,
    rand: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """Seconds to wait before trying again, or None: pass the failure on as it is.

    BODY_REPLAYABLE: the same body bytes can be sent again (for a failure to
    connect, a streamed body not started yet qualifies). RETRIES_DONE transient
    retries were made already, WAITED_SECONDS waited in all; NOW (epoch seconds)
    reads an HTTP-date Retry-After; RAND draws the jitter.
    """
    if retries_done >= policy.attempts or not body_replayable:
        return None
    if failure != "connect":  # the request went out: only what is safe to repeat
        if method not in policy.methods:
            return None
        if isinstance(failure, int) and failure not in policy.statuses:
            return None
    left = max(0.0, policy.max_delay_seconds - waited_seconds)
    if retry_after is not None:
        asked = parse_retry_after(retry_after, now=now)
        if asked is not None:
            return asked if asked <= left else None
    ceiling = FIRST_DELAY_SECONDS * 2**retries_done  # full jitter: anywhere in [0, ceiling]
    return min(rand(0.0, ceiling), left)


def parse_retry_after(value: str, *, now: float) -> float | None:
    """``Retry-After`` as seconds from NOW: delay-seconds or an HTTP-date; None if neither.

    The value is the upstream's, so anything may be in it: only ASCII digits count
    (``str.isdigit`` takes ``²``), a delay too long to mean anything is infinite (it
    never fits, so the answer is passed on), and a date no calendar holds is unreadable.
    """
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(text) if len(text) <= _MAX_DELAY_DIGITS else math.inf
    if len(text) > _MAX_HTTP_DATE_CHARS:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP dates are
        when = when.replace(tzinfo=datetime.UTC)
    try:
        seconds = when.timestamp() - now
    except (ValueError, OverflowError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None
