"""An embedded fake of Criteo's API, faithful to what Criteo answers.

Used by ``criteo-proxy demo`` (no credentials, no network) and by the tests,
which run it as a real aiohttp server on loopback and inspect what it saw.

- ``POST /oauth2/token``: insists on form encoding; client_credentials,
  authorization_code (single-use codes from ``consent()`` or
  ``GET /_fake/consent``, bound to their redirect URI) and refresh_token (with
  rotation, strict or not); tokens are JWT-shaped and live ``expires_in`` seconds.
- Every other path demands a valid, unexpired Bearer token and answers 401 in
  Criteo's error envelope otherwise.
- ``GET /{version}/advertisers/me`` and ``/marketing-solutions/me`` answer
  like Criteo; ``/{version}/echo/...`` answers with what it received; a test
  can put its own handler on any path with ``handlers``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlencode

from aiohttp import web
from multidict import CIMultiDict

DEMO_CLIENT_ID: Final = "demo-client"
DEMO_CLIENT_SECRET: Final = "demo-secret"  # noqa: S105 - the fake's own, public demo secret

_FORM: Final = "application/x-www-form-urlencoded"
_WRONG_CONTENT_TYPE: Final = {
    "error": "invalid_request",
    "error_description": (
        'The request content-type header must be "application/x-www-form-urlencoded".'
    ),
    "error_uri": "https://tools.ietf.org/html/rfc6749#section-5.2",
}
_INVALID_GRANT: Final = {
    "error": "invalid_grant",
    "error_description": "The authorization code or refresh token is invalid, expired or used.",
}
_INVALID_CLIENT: Final = {
    "error": "invalid_client",
    "error_description": "The client_id doesn't exist or the client_secret is invalid.",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """An API call as the fake received it."""

    method: str
    raw_path: str
    headers: CIMultiDict[str]
    body: bytes
    token: str | None


@dataclass(frozen=True, slots=True)
class SeenTokenRequest:
    content_type: str
    form: dict[str, str]


@dataclass
class FakeCriteo:
    """State and knobs of the fake; ``build_app()`` serves it."""

    clients: Mapping[str, str] = field(default_factory=lambda: {DEMO_CLIENT_ID: DEMO_CLIENT_SECRET})
    expires_in: int = 900
    clock: Callable[[], float] = time.time
    # Knobs a test turns: answer the token endpoint with this status; hold it
    # until this event is set; run these handlers instead of the built-in ones.
    token_failure_status: int | None = None
    token_gate: Callable[[], Awaitable[None]] | None = None
    handlers: dict[str, Handler] = field(default_factory=dict)
    # API versions Criteo is retiring (version -> Sunset date) and those it has retired (410).
    deprecated_versions: dict[str, str] = field(
        default_factory=lambda: {"2024-07": "Thu, 31 Jul 2025 00:00:00 GMT"}
    )
    retired_versions: set[str] = field(default_factory=lambda: {"2023-01"})
    # Authorization-code apps: codes live code_lifetime seconds and are single use;
    # a refresh rotates the refresh token, and strict rotation invalidates the old one.
    code_lifetime: float = 60.0
    rotate_refresh_tokens: bool = True
    strict_rotation: bool = True
    # Rate limits: rate_limit calls per rate_window_seconds and bucket (reports apart),
    # on the wall clock (the proxy paces on real time); None = unmetered.
    rate_limit: int | None = None
    rate_window_seconds: int = 60
    rate_clock: Callable[[], float] = time.time
    rate_counts: dict[tuple[str, int], int] = field(default_factory=dict)
    throttled: int = 0  # 429s answered
    codes: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> client id

    requests: list[SeenRequest] = field(default_factory=list)
    token_requests: list[SeenTokenRequest] = field(default_factory=list)
    issued: dict[str, float] = field(default_factory=dict)  # access token -> expires at

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        app.router.add_post("/oauth2/token", self._token)
        app.router.add_get("/_fake/consent", self._consent_page)
        app.router.add_route("*", "/{tail:.*}", self._api)
        return app

    @property
    def last_request(self) -> SeenRequest:
        return self.requests[-1]

    def revoke_tokens(self) -> None:
        """Criteo forgets every token it issued (as after a key rotation)."""
        self.issued.clear()

    def issue_token(self) -> str:
        now = self.clock()
        header = {"alg": "RS256", "typ": "JWT"}
        claims = {"jti": uuid.uuid4().hex, "iat": int(now), "exp": int(now + self.expires_in)}
        token = ".".join(
            [
                _b64(json.dumps(header).encode()),
                _b64(json.dumps(claims).encode()),
                _b64(secrets.token_bytes(64)),
            ]
        )
        self.issued[token] = now + self.expires_in
        return token

    async def _token(self, request: web.Request) -> web.Response:
        content_type = request.headers.get("Content-Type", "")
        body = await request.read()
        if self.token_gate is not None:
            await self.token_gate()
        if content_type.split(";")[0].strip().lower() != _FORM:
            self.token_requests.append(SeenTokenRequest(content_type, {}))
            return web.json_response(_WRONG_CONTENT_TYPE, status=400)
        form = dict((await request.post()).items()) if body else {}
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        self.token_requests.append(SeenTokenRequest(content_type, fields))
        if self.token_failure_status is not None:
            return web.Response(status=self.token_failure_status, text="token endpoint failure")
        grant_type = fields.get("grant_type")
        if grant_type not in ("client_credentials", "authorization_code", "refresh_token"):
            return web.json_response(
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"grant_type {grant_type!r} is not supported",
                },
                status=400,
            )
        client_id = fields.get("client_id", "")
        if client_id not in self.clients or self.clients[client_id] != fields.get("client_secret"):
            return web.json_response(_INVALID_CLIENT, status=401)
        refresh_token: str | None = None
        if grant_type == "authorization_code":
            refresh_token = self._redeem_code(
                client_id, fields.get("code", ""), fields.get("redirect_uri", "")
            )
        elif grant_type == "refresh_token":
            refresh_token = self._refresh(client_id, fields.get("refresh_token", ""))
        if grant_type != "client_credentials" and refresh_token is None:
            return web.json_response(_INVALID_GRANT, status=400)
        return web.json_response(
            {
                "access_token": self.issue_token(),
                "token_type": "Bearer",
                "refresh_token": refresh_token,
                "expires_in": self.expires_in,
            }
        )

    def consent(self, client_id: str, redirect_uri: str) -> str:
        """The advertiser consents: a single-use code for this client and redirect URI."""
        code = "code-" + secrets.token_urlsafe(24)  # never "-..." (it would read as a flag)
        self.codes[code] = (client_id, redirect_uri, self.clock() + self.code_lifetime)
        return code

    def _redeem_code(self, client_id: str, code: str, redirect_uri: str) -> str | None:
        issued = self.codes.pop(code, None)  # single use, even when refused below
        if issued is None:
            return None
        owner, expected_uri, expires_at = issued
        if owner != client_id or expected_uri != redirect_uri or self.clock() >= expires_at:
            return None
        return self._issue_refresh_token(client_id)

    def _refresh(self, client_id: str, refresh_token: str) -> str | None:
        if self.refresh_tokens.get(refresh_token) != client_id:
            return None
        if not self.rotate_refresh_tokens:
            return refresh_token
        if self.strict_rotation:
            del self.refresh_tokens[refresh_token]
        return self._issue_refresh_token(client_id)

    def _issue_refresh_token(self, client_id: str) -> str:
        refresh_token = "rt-" + secrets.token_urlsafe(32)
        self.refresh_tokens[refresh_token] = client_id
        return refresh_token

    async def _consent_page(self, request: web.Request) -> web.Response:
        """Stands for consent.criteo.com: consents at once and redirects with the code."""
        client_id = request.query.get("client_id", "")
        redirect_uri = request.query.get("redirect_uri", "")
        if client_id not in self.clients or not redirect_uri:
            return web.json_response({"error": "invalid_request"}, status=400)
        query = {"code": self.consent(client_id, redirect_uri)}
        if "state" in request.query:
            query["state"] = request.query["state"]
        # Appended to the redirect URI as it was registered, its own query kept as is.
        separator = "&" if "?" in redirect_uri else "?"
        raise web.HTTPFound(redirect_uri + separator + urlencode(query))

    async def _api(self, request: web.Request) -> web.StreamResponse:
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
        quota = self._take_quota(request.path)
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

    def _take_quota(self, path: str) -> dict[str, str] | None:
        """Count this call in its window; remaining -1 means over the limit."""
        if self.rate_limit is None:
            return None
        now = self.rate_clock()
        index = int(now // self.rate_window_seconds)
        bucket = "reports" if "/statistics/" in path or "/reports" in path else "api"
        used = self.rate_counts.get((bucket, index), 0)
        if used < self.rate_limit:
            self.rate_counts[(bucket, index)] = used + 1
        remaining = self.rate_limit - used - 1
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(remaining, -1)),
            "x-ratelimit-reset": str((index + 1) * self.rate_window_seconds),
        }

    async def _route(self, request: web.Request, token: str) -> web.StreamResponse:
        version = request.path.strip("/").split("/", 1)[0]
        if version in self.retired_versions:
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
            response.headers["Deprecation"] = "true"
            response.headers["Sunset"] = self.deprecated_versions[version]
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
        if request.method == "GET" and segments[1:] in (
            ["advertisers", "me"],
            ["marketing-solutions", "me"],
        ):
            return web.json_response(
                {
                    "data": [
                        {
                            "id": "12345",
                            "type": "Advertiser",
                            "attributes": {"advertiserName": "Demo advertiser"},
                        }
                    ],
                    "errors": [],
                    "warnings": [],
                }
            )
        return _criteo_error(404, "validation", "resource-not-found", "Resource not found")


def _seen(request: web.Request, body: bytes, token: str) -> SeenRequest:
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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
