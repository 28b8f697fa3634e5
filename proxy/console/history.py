"""The console's memory: a bounded ring of request records. Pure data, no I/O.

Bounded twice: at most ``console.history`` records, and at most
``MAX_HISTORY_BYTES`` of paths and error bodies together (UTF-8 bytes, as they
sit in memory and go out: never characters); the oldest go first.
Records hold nothing secret by construction: paths arrive with secret-looking
query values masked, and error bodies are Criteo's answers (the caller scrubs
the access token from them).
"""

from __future__ import annotations

import collections
import time
from typing import Final, NamedTuple

from proxy.console.advice import build_advice
from proxy.errors import Who
from proxy.exchange import Exchange, RetryReason
from proxy.observability.access_log import redact_query

MAX_HISTORY_BYTES: Final = 8 * 1024 * 1024
_RECORD_OVERHEAD_BYTES: Final = 400  # the fixed fields of one record, roughly


class RequestRecord(NamedTuple):
    """One request as the console shows it. A named tuple: one is made per request, and
    a frozen dataclass's __init__ costs several times more (issue 15's profile)."""

    seq: int
    time: float  # epoch seconds
    profile: str
    method: str
    path: str  # query values masked as in the access log
    status: int
    duration_ms: float
    upstream_ms: float | None
    retried: RetryReason | None
    rate_limit_wait_ms: float
    request_id: str
    criteo_trace_id: str | None
    proxy_error: str | None
    error_body: str | None
    who: Who | None  # whose side a failure (400 or more) is on
    advice: str | None  # what to do next, in one sentence

    @property
    def size_bytes(self) -> int:
        return (
            _RECORD_OVERHEAD_BYTES
            + utf8_size(self.path)
            + utf8_size(self.error_body or "")
            + utf8_size(self.advice or "")
        )

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "time": format_utc(self.time),
            "profile": self.profile,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "upstream_ms": self.upstream_ms,
            "retried": self.retried,
            "rate_limit_wait_ms": self.rate_limit_wait_ms,
            "request_id": self.request_id,
            "criteo_trace_id": self.criteo_trace_id,
            "proxy_error": self.proxy_error,
            "error_body": self.error_body,
            "who": self.who,
            "advice": self.advice,
        }


class History:
    """The last MAX_RECORDS requests, oldest first; ``seq`` grows by one per request."""

    def __init__(self, max_records: int, *, max_bytes: int = MAX_HISTORY_BYTES) -> None:
        self.max_records = max_records
        self._max_bytes = max_bytes
        self._records: collections.deque[RequestRecord] = collections.deque()
        self._bytes = 0
        self._last_seq = 0

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def next_seq(self) -> int:
        self._last_seq += 1
        return self._last_seq

    def append(self, record: RequestRecord) -> None:
        if self.max_records == 0:
            return
        records = self._records
        records.append(record)
        self._bytes += record.size_bytes
        while len(records) > self.max_records or (self._bytes > self._max_bytes and records):
            self._bytes -= records.popleft().size_bytes

    def after(self, seq: int, limit: int | None = None) -> list[RequestRecord]:
        """Records newer than SEQ, oldest first; at most LIMIT of them, the oldest ones."""
        newer: list[RequestRecord] = []
        for record in reversed(self._records):  # a poll asks for the last few: scan from the end
            if record.seq <= seq:
                break
            newer.append(record)
        newer.reverse()
        return newer if limit is None else newer[:limit]

    def __len__(self) -> int:
        return len(self._records)


def utf8_size(text: str) -> int:
    """TEXT's size in UTF-8: a character of an error body may take four bytes."""
    return len(text) if text.isascii() else len(text.encode("utf-8", errors="replace"))


def format_utc(epoch_seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-12-02T09:12:03.481Z``."""
    whole = int(epoch_seconds)
    millis = int((epoch_seconds - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def build_record(
    history: History,
    *,
    profile: str,
    method: str,
    raw_path: str,
    status: int,
    exchange: Exchange,
    duration_seconds: float,
    keep_error_body: bool,
    scrub: str | None,
    quote_detail: bool = True,
) -> RequestRecord:
    """EXCHANGE as the console keeps it: query values masked, SCRUB (the access token in
    use) never kept, error bodies only when asked and only for answers that failed; from
    400, whose side it is on and what to do (quoting Criteo's detail if QUOTE_DETAIL)."""
    error_body = None
    body = exchange.error_body
    if keep_error_body and body is not None and status >= 400:
        error_body = body.decode("utf-8", errors="replace")
        if scrub:
            error_body = error_body.replace(scrub, "***")
    upstream = exchange.upstream_seconds
    advice = build_advice(
        status, method, exchange, raw_path, quote_detail=quote_detail, scrub=scrub
    )
    return RequestRecord(
        seq=history.next_seq(),
        time=time.time(),
        profile=profile,
        method=method,
        path=redact_query(raw_path),
        status=status,
        duration_ms=round(duration_seconds * 1000, 1),
        upstream_ms=None if upstream is None else round(upstream * 1000, 1),
        retried=exchange.retried,
        rate_limit_wait_ms=round(exchange.rate_limit_wait_seconds * 1000, 1),
        request_id=exchange.request_id,
        criteo_trace_id=exchange.criteo_trace_id,
        proxy_error=exchange.proxy_error,
        error_body=error_body,
        who=None if advice is None else advice.who,
        advice=None if advice is None else advice.advice,
    )
