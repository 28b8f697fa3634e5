"""An embedded fake of Criteo's API, faithful to what Criteo answers.

Used by ``criteo-proxy demo`` (no credentials, no network) and by the tests,
which run it as a real aiohttp server on loopback and inspect what it saw.

- ``POST /oauth2/token`` and ``GET /_fake/consent``: see ``oauth``.
- Every other path demands a valid, unexpired Bearer token and answers 401 in
  Criteo's error envelope otherwise.
- ``GET /{version}/advertisers/me``, ``/marketing-solutions/me`` and
  ``/retail-media/accounts``, and ``POST /{version}/statistics/report`` (see
  ``resources``) answer like Criteo, under any version it has not retired; every
  other path gets Criteo's 404 envelope. A deprecated version says so in headers, in
  the envelope's ``warnings``, or both (``deprecation_signal``). ``/{version}/echo/...``
  answers with what it received; a test can put its own handler on any path with
  ``handlers``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from aiohttp import web
from multidict import CIMultiDict

from proxy.fakes.oauth import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeAuthorizationServer
from proxy.fakes.resources import CANNED_ANSWERS, ReportRequestError, build_report

__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "LIVE_API_VERSION",
    "FakeCriteo",
    "SeenRequest",
]

# A version Criteo serves today (../shared/CRITEO.md: 2026-07 until about July 2027).
# The one place the README's examples and the demo's curl line take it from: when
# Criteo retires it, change it here and in the README (tests/docs/test_readme.py
# checks that both agree).
LIVE_API_VERSION: Final = "2026-07"
_DATED_VERSION: Final = re.compile(r"\d{4}-\d{2}")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """An API call as the fake received it."""

    method: str
    raw_path: str
    headers: CIMultiDict[str]
    body: bytes
    token: str | None
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class FakeCriteo(FakeAuthorizationServer):
    """State and knobs of the fake API (its token endpoint's are inherited);
    ``build_app()`` serves both."""

    # Run these handlers instead of the built-in ones.
    handlers: dict[str, Handler] = field(default_factory=dict)
    # API versions Criteo is retiring (version -> Sunset date) and those it has retired
    # (410), as of late 2026 (../shared/CRITEO.md): 2026-01 is in its deprecation window,
    # every dated version before it (2025-10, 2025-07, ...) is gone.
    deprecated_versions: dict[str, str] = field(
        default_factory=lambda: {"2026-01": "Wed, 27 Jan 2027 00:00:00 GMT"}
    )
    retired_versions: set[str] = field(default_factory=set)
    oldest_served_version: str = "2026-01"
    # How Criteo says a version is dying (CRITEO.md: handle both): Deprecation and
    # Sunset headers, a warning of type "deprecation" in the envelope, or both.
    deprecation_signal: Literal["headers", "warnings", "both"] = "headers"
    # Rate limits: rate_limit calls per rate_window_seconds and bucket (reports apart),
    # on the wall clock (the proxy paces on real time); None = unmetered.
    rate_limit: int | None = None
    rate_window_seconds: int = 60
    # Windows are counted from this epoch second: Criteo's last a minute, so a test that
    # needs no reset for a while starts one now (its reset a minute ahead, never sooner).
    rate_window_start: float = 0.0
    rate_clock: Callable[[], float] = time.time
    # Calls counted per (bucket, window index), per app as Criteo counts: the demo
    # client's buckets are "api" and "reports", another client's "<client id>/api"...
    rate_counts: dict[tuple[str, int], int] = field(default_factory=dict)
    throttled: int = 0  # 429s answered
    # Transient failures, before anything else (as a load balancer would): per path, the
    # next answers to give ("reset" drops the connection once the request is read); and
    # every fail_one_in-th API call answers 503. Such answers carry retry_after if set.
    planned_failures: dict[str, list[int | str]] = field(default_factory=dict)
    fail_one_in: int | None = None
    retry_after: str | None = None
    api_calls: int = 0

    requests: list[SeenRequest] = field(default_factory=list)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        app.router.add_post("/oauth2/token", self._token)
        app.router.add_get("/_fake/consent", self._consent_page)
        app.router.add_route("*", "/{tail:.*}", self._api)
        return app

    @property
    def last_request(self) -> SeenRequest:
        return self.requests[-1]

    async def _api(self, request: web.Request) -> web.StreamResponse:
        self.api_calls += 1
        failure = self._next_failure(request.path)
        if failure is not None:
            return await self._fail(request, failure)
        token = _bearer(request.headers.get("Authorization", ""))
        expires_at = self.issued.get(token) if token else None
        if token is None or expires_at is None:
            return _criteo_error(
                401,
                "authorization",
                "authorization-token-invalid",
                "The authorization token is invalid",
            )
        if self.clock() >= expires_at:
            return _criteo_error(
                401,
                "authorization",
                "authorization-token-expired",
                "The authorization token has expired",
            )
        quota = self._take_quota(request.path, self.issued_to.get(token, DEMO_CLIENT_ID))
        if quota is not None and quota["x-ratelimit-remaining"] == "-1":
            self.throttled += 1
            del quota["x-ratelimit-remaining"]
            throttled = _criteo_error(429, "quota", "rate-limit-exceeded", "Too many requests")
            throttled.headers.update(quota, **{"x-ratelimit-remaining": "0"})
            return throttled
        response = await self._route(request, token)
        if quota is not None and not response.prepared:
            response.headers.update(quota)
        return response

    def _next_failure(self, path: str) -> int | str | None:
        planned = self.planned_failures.get(path)
        if planned:
            return planned.pop(0)
        if self.fail_one_in and self.api_calls % self.fail_one_in == 0:
            return 503
        return None

    async def _fail(self, request: web.Request, failure: int | str) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            _seen(request, body, _bearer(request.headers.get("Authorization", "")))
        )
        if failure == "reset":
            # The request was read, the answer never comes: the connection just drops.
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable  # never written: the transport is gone
        status = int(failure)
        response = _criteo_error(
            status, "availability", "service-unavailable", "The service is unavailable"
        )
        if self.retry_after is not None:
            response.headers["Retry-After"] = self.retry_after
        return response

    def _take_quota(self, path: str, client_id: str) -> dict[str, str] | None:
        """Count this call in its window; remaining -1 means over the limit."""
        if self.rate_limit is None:
            return None
        now = self.rate_clock()
        index = int((now - self.rate_window_start) // self.rate_window_seconds)
        bucket = "reports" if "/statistics/" in path or "/reports" in path else "api"
        if client_id != DEMO_CLIENT_ID:
            bucket = f"{client_id}/{bucket}"
        used = self.rate_counts.get((bucket, index), 0)
        if used < self.rate_limit:
            self.rate_counts[(bucket, index)] = used + 1
        remaining = self.rate_limit - used - 1
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(remaining, -1)),
            "x-ratelimit-reset": _epoch_text(
                self.rate_window_start + (index + 1) * self.rate_window_seconds
            ),
        }

    async def _route(self, request: web.Request, token: str) -> web.StreamResponse:
        version = request.path.strip("/").split("/", 1)[0]
        if version in self.retired_versions or _dated_before(version, self.oldest_served_version):
            self.requests.append(_seen(request, b"", token))
            return _criteo_error(
                410,
                "deprecation",
                "version-decommissioned",
                f"API version {version} has been decommissioned",
            )
        handler = self.handlers.get(request.path)
        if handler is not None:
            self.requests.append(_seen(request, b"", token))
            response = await handler(request)
        else:
            response = await self._builtin(request, token)
        if version in self.deprecated_versions and not response.prepared:
            sunset = self.deprecated_versions[version]
            if self.deprecation_signal in ("headers", "both"):
                response.headers["Deprecation"] = "true"
                response.headers["Sunset"] = sunset
            if self.deprecation_signal in ("warnings", "both"):
                _add_deprecation_warning(response, version, sunset)
        return response

    async def _builtin(self, request: web.Request, token: str) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(_seen(request, body, token))
        segments = request.path.strip("/").split("/")
        if len(segments) >= 2 and segments[1] == "echo":
            return web.json_response(
                {
                    "method": request.method,
                    "rawPath": request.raw_path,
                    "bodyLength": len(body),
                    "bodySha256": hashlib.sha256(body).hexdigest(),
                }
            )
        resource = "/".join(segments[1:])
        answer = CANNED_ANSWERS.get((request.method, resource))
        if answer is not None:
            return web.json_response(answer)
        if request.method == "POST" and resource == "statistics/report":
            try:
                content_type, report = build_report(body)
            except ReportRequestError as exc:
                return _criteo_error(400, "validation", "invalid-request", str(exc))
            return web.Response(body=report, content_type=content_type)
        return _criteo_error(404, "validation", "resource-not-found", "Resource not found")


def _dated_before(version: str, oldest: str) -> bool:
    return _DATED_VERSION.fullmatch(version) is not None and version < oldest


def _add_deprecation_warning(response: web.StreamResponse, version: str, sunset: str) -> None:
    """A warning of type "deprecation" in the envelope of a JSON answer (not in others)."""
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return
    if not isinstance(response.body, bytes):
        return
    envelope = json.loads(response.body)
    if not isinstance(envelope, dict) or not ({"data", "errors"} & envelope.keys()):
        return
    trace_id = uuid.uuid4().hex
    warnings = envelope.setdefault("warnings", [])
    warnings.append(
        {
            "traceId": trace_id,
            "traceIdentifier": trace_id,
            "type": "deprecation",
            "code": "version-deprecated",
            "instance": "/",
            "title": f"API version {version} is deprecated",
            "detail": f"API version {version} will be decommissioned on {sunset}",
        }
    )
    response.body = json.dumps(envelope).encode()


def _epoch_text(seconds: float) -> str:
    """Epoch seconds as Criteo writes them: whole (a window started mid-second: 3 decimals)."""
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:.3f}"


def _seen(request: web.Request, body: bytes, token: str | None) -> SeenRequest:
    return SeenRequest(request.method, request.raw_path, CIMultiDict(request.headers), body, token)


def _bearer(authorization: str) -> str | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _criteo_error(status: int, error_type: str, code: str, title: str) -> web.Response:
    trace_id = uuid.uuid4().hex
    envelope = {
        "errors": [
            {
                "traceId": trace_id,
                "traceIdentifier": trace_id,
                "type": error_type,
                "code": code,
                "instance": "/",
                "title": title,
                "detail": title,
            }
        ],
        "warnings": [],
    }
    return web.json_response(envelope, status=status)
