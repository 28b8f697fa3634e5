"""The proxy's Prometheus metrics (prometheus-client: its exposition format and escaping).

Labels are bounded: methods outside the known set count as ``other``, never a path.
"""

from __future__ import annotations

from typing import Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

_KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
METRICS_CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4


class Metrics:
    """The proxy's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self, *, by_profile: bool = False) -> None:
        # The profile label exists when profiles are configured (DESIGN 9); a single
        # app's series keep the labels they always had.
        self.by_profile = by_profile
        p: list[str] = ["profile"] if by_profile else []
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "criteo_proxy_requests",
            "Requests answered, by method and status class.",
            [*p, "method", "status_class"],
            registry=r,
        )
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
            "criteo_proxy_token_fetches",
            "Token requests, by result.",
            [*p, "result"],
            registry=r,
        )
        self.retries = Counter(
            "criteo_proxy_401_retries",
            "Requests replayed with a new token after Criteo answered 401.",
            p,
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
            [*p, "reason"],
            registry=r,
        )
        self.rate_limit_waiting = Gauge(
            "criteo_proxy_rate_limit_waiting_requests",
            "Requests waiting for Criteo's rate-limit window.",
            p,
            registry=r,
        )
        self.rate_limit_wait = Counter(
            "criteo_proxy_rate_limit_wait_seconds",
            "Total seconds requests waited for Criteo's rate-limit window.",
            p,
            registry=r,
        )
        self.rate_limited = Counter(
            "criteo_proxy_rate_limited",
            "429s: seen from Criteo, retried after the reset, refused by the proxy (max_wait).",
            [*p, "outcome"],
            registry=r,
        )

        self.coordination_up = Gauge(
            "criteo_proxy_coordination_up",
            "1 while Redis answers and this member shares with the fleet (DESIGN 11), else 0.",
            p,
            registry=r,
        )
        self.coordination_errors = Counter(
            "criteo_proxy_coordination_errors",
            "Redis calls that failed, by operation: connect, token, refresh, window, announce.",
            [*p, "operation"],
            registry=r,
        )

    def for_profile(self, profile: str) -> ProfileMetrics:
        """The metrics one profile counts in, its label bound (profiles are configured
        names: the label set stays bounded)."""
        return ProfileMetrics(self, profile)

    def render(self) -> bytes:
        return generate_latest(self.registry)


_Labelled = TypeVar("_Labelled", Counter, Gauge)


class ProfileMetrics:
    """One profile's children of the shared metrics, made once, not per request."""

    def __init__(self, metrics: Metrics, profile: str) -> None:
        self.shared = metrics
        self._label: tuple[str, ...] = (profile,) if metrics.by_profile else ()
        self._request_counters: dict[tuple[str, int], Counter] = {}
        self.retries = self._child(metrics.retries)
        self.rate_limit_wait = self._child(metrics.rate_limit_wait)
        self.rate_limit_waiting = self._child(metrics.rate_limit_waiting)
        self.upstream_latency = metrics.upstream_latency
        self.deprecations = metrics.deprecations

    def _child(self, metric: _Labelled) -> _Labelled:
        """METRIC's series for this profile (the metric itself without profiles)."""
        return metric.labels(*self._label) if self._label else metric

    def count_request(self, method: str, status: int, bytes_in: int, bytes_out: int) -> None:
        # Keyed by the label, not the raw method: a client inventing methods must not
        # grow this cache. labels() is called once per (method, status class).
        key = (method if method in _KNOWN_METHODS else "other", status // 100)
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self._request_counters[key] = self.shared.requests.labels(
                *self._label, key[0], f"{key[1]}xx"
            )
        counter.inc()
        if bytes_in:
            self.shared.request_bytes.inc(bytes_in)
        if bytes_out:
            self.shared.response_bytes.inc(bytes_out)

    def count_token_fetch(self, succeeded: bool) -> None:
        self.shared.token_fetches.labels(*self._label, "success" if succeeded else "failure").inc()

    def count_transient_retry(self, reason: str) -> None:
        self.shared.transient_retries.labels(*self._label, reason).inc()

    def count_429(self, outcome: str) -> None:
        self.shared.rate_limited.labels(*self._label, outcome).inc()

    def count_coordination_error(self, operation: str) -> None:
        self.shared.coordination_errors.labels(*self._label, operation).inc()

    def set_coordination_up(self, up: bool) -> None:
        self._child(self.shared.coordination_up).set(1 if up else 0)
