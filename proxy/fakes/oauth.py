"""The fake's authorization server: Criteo's ``POST /oauth2/token`` and its consent page.

Insists on form encoding; client_credentials, authorization_code (single-use
codes from ``consent()`` or ``GET /_fake/consent``, bound to their redirect URI)
and refresh_token (with rotation, strict or not); tokens are JWT-shaped and
live ``expires_in`` seconds. ``FakeCriteo`` adds the API behind it.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlencode

from aiohttp import web

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


@dataclass(frozen=True, slots=True)
class SeenTokenRequest:
    content_type: str
    form: dict[str, str]


@dataclass
class FakeAuthorizationServer:
    """The token endpoint's state and knobs."""

    clients: Mapping[str, str] = field(default_factory=lambda: {DEMO_CLIENT_ID: DEMO_CLIENT_SECRET})
    expires_in: int = 900
    clock: Callable[[], float] = time.time
    # Knobs a test turns: answer the token endpoint with this status; hold it
    # until this event is set.
    token_failure_status: int | None = None
    token_gate: Callable[[], Awaitable[None]] | None = None
    # Authorization-code apps: codes live code_lifetime seconds and are single use;
    # a refresh rotates the refresh token, and strict rotation invalidates the old one.
    code_lifetime: float = 60.0
    rotate_refresh_tokens: bool = True
    strict_rotation: bool = True
    codes: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> client id
    token_requests: list[SeenTokenRequest] = field(default_factory=list)
    issued: dict[str, float] = field(default_factory=dict)  # access token -> expires at
    issued_to: dict[str, str] = field(default_factory=dict)  # access token -> client id

    def revoke_tokens(self) -> None:
        """Criteo forgets every token it issued (as after a key rotation)."""
        self.issued.clear()

    def issue_token(self, client_id: str = DEMO_CLIENT_ID) -> str:
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
        self.issued_to[token] = client_id
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
                "access_token": self.issue_token(client_id),
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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
