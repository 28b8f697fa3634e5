"""The proxy's Prometheus metrics (prometheus-client: its exposition format and escaping).

Labels are bounded: methods outside the known set count as ``other``, never a path.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

_KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
METRICS_CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4


class Metrics:
    """The proxy's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "criteo_proxy_requests",
            "Requests answered, by method and status class.",
            ["method", "status_class"],
            registry=r,
        )
        self._request_counters: dict[tuple[str, int], Counter] = {}
        self.in_flight = Gauge(
            "criteo_proxy_in_flight_requests", "Requests being handled now.", registry=r
        )
        self.upstream_latency = Histogram(
            "criteo_proxy_upstream_latency_seconds",
            "Time from sending a request to Criteo until its response headers arrived.",
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.token_fetches = Counter(
            "criteo_proxy_token_fetches", "Token requests, by result.", ["result"], registry=r
        )
        self.retries = Counter(
            "criteo_proxy_401_retries",
            "Requests replayed with a new token after Criteo answered 401.",
            registry=r,
        )
        self.request_bytes = Counter(
            "criteo_proxy_request_bytes", "Request body bytes received from clients.", registry=r
        )
        self.response_bytes = Counter(
            "criteo_proxy_response_bytes", "Response body bytes sent to clients.", registry=r
        )
        self.deprecations = Counter(
            "criteo_proxy_deprecated_responses",
            "Responses from Criteo carrying Deprecation or Sunset headers, by API version.",
            ["version"],
            registry=r,
        )

        self.transient_retries = Counter(
            "criteo_proxy_transient_retries",
            "Requests sent again after a transient failure, by reason: connect, reset or the "
            "status.",
            ["reason"],
            registry=r,
        )
        self.rate_limit_waiting = Gauge(
            "criteo_proxy_rate_limit_waiting_requests",
            "Requests waiting for Criteo's rate-limit window.",
            registry=r,
        )
        self.rate_limit_wait = Counter(
            "criteo_proxy_rate_limit_wait_seconds",
            "Total seconds requests waited for Criteo's rate-limit window.",
            registry=r,
        )
        self.rate_limited = Counter(
            "criteo_proxy_rate_limited",
            "429s: seen from Criteo, retried after the reset, refused by the proxy (max_wait).",
            ["outcome"],
            registry=r,
        )

    def count_request(self, method: str, status: int, bytes_in: int, bytes_out: int) -> None:
        # Keyed by the label, not the raw method: a client inventing methods must not
        # grow this cache. labels() is called once per (method, status class).
        key = (method if method in _KNOWN_METHODS else "other", status // 100)
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self._request_counters[key] = self.requests.labels(key[0], f"{key[1]}xx")
        counter.inc()
        if bytes_in:
            self.request_bytes.inc(bytes_in)
        if bytes_out:
            self.response_bytes.inc(bytes_out)

    def count_transient_retry(self, reason: str) -> None:
        self.transient_retries.labels(reason).inc()

    def count_token_fetch(self, succeeded: bool) -> None:
        self.token_fetches.labels("success" if succeeded else "failure").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
