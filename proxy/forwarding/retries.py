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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from proxy.config.schema import TransientRetryConfig

FIRST_DELAY_SECONDS: Final = 0.25

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
    """``Retry-After`` as seconds from NOW: delay-seconds or an HTTP-date; None if neither."""
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP dates are
        when = when.replace(tzinfo=datetime.UTC)
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None
