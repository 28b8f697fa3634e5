"""What happened to one request: filled in along the way, read once at the end.

The access line, the metrics and the console history all read this one record,
instead of a handful of keys scattered over the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from proxy.errors import Who

RetryReason = Literal["401", "429", "transient"]


class Exchange:
    __slots__ = (
        "aborted",
        "bytes_in",
        "bytes_out",
        "cors_origin",
        "criteo_trace_id",
        "error_body",
        "proxy_error",
        "rate_limit_wait_seconds",
        "request_id",
        "reserved",
        "retried",
        "started",
        "target",
        "upstream_seconds",
        "who",
    )

    def __init__(self, request_id: str, started: float) -> None:
        self.request_id = request_id
        self.started = started  # time.perf_counter() when the request came in
        self.target = ""  # the path and query to forward, once the guards parsed it
        self.cors_origin: str | None = None  # an allowed browser origin
        self.bytes_in = 0
        self.bytes_out = 0
        self.upstream_seconds: float | None = None  # until response headers, all sends
        self.retried: RetryReason | None = None  # the last reason it was sent again
        self.rate_limit_wait_seconds = 0.0
        self.aborted = False  # the upstream failed after the status was sent
        self.criteo_trace_id: str | None = None
        self.error_body: bytes | None = None  # a small JSON error answer, for the console
        self.proxy_error: str | None = None  # the proxy's own error code, if it answered
        self.who: Who | None = None  # whose side the proxy's own error is on (DESIGN 1)
        self.reserved = False  # answered by a /_proxy/ route (not forwarded)

    def add_upstream_seconds(self, seconds: float) -> None:
        self.upstream_seconds = (self.upstream_seconds or 0.0) + seconds
