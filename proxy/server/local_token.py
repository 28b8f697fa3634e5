"""The local token endpoint (DESIGN 2): a client's own token request, answered here.

Criteo's SDKs fetch their own token from ``host + /oauth2/token`` before every call
they make. Pointed at the proxy, they would need the real secret (their request was
forwarded to Criteo), and fail while Criteo's token endpoint is down although the
proxy holds a valid token. So a ``POST /oauth2/token`` whose form body (read up to
``retry.body_limit``) says ``grant_type=client_credentials`` gets a placeholder,
worthless anywhere else: the client's calls carry the proxy's token as every call
does. The posted credentials (form or ``Authorization: Basic``) are never checked,
logged, kept or sent on. Anything else goes to Criteo as the client sent it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from proxy.exchange import Exchange
from proxy.forwarding.forwarder import Forwarder
from proxy.forwarding.request_body import RequestBody
from proxy.server.guards import GuardPolicy, check_method_and_path
from proxy.server.state import ProcessState, ProfileState

log = logging.getLogger("criteo_proxy.tokens")

LOCAL_TOKEN_PATH: Final = "/oauth2/token"  # noqa: S105 - a path
PLACEHOLDER_PREFIX: Final = "criteo-proxy-local-"
_LIFETIME_SECONDS: Final = 900  # as Criteo's
_FORM: Final = "application/x-www-form-urlencoded"
_MAX_CLIENT_IDS_NOTED: Final = 16  # a client may invent ids: the log stays bounded
_MAX_CLIENT_ID_SHOWN: Final = 64


def build_local_token_responder(
    policy: GuardPolicy,
    process: ProcessState,
    profile: ProfileState,
    forwarder_key: web.AppKey[Forwarder],
) -> Callable[[web.Request, Exchange], Awaitable[web.StreamResponse]]:
    """The handler of POST /oauth2/token on PROFILE's app (its forwarder at FORWARDER_KEY)."""
    client_id = profile.config.credentials.client_id
    name = profile.name if process.config.profiles else None

    def respond(request: web.Request, exchange: Exchange) -> Awaitable[web.StreamResponse]:
        return answer_or_forward(
            request,
            exchange,
            forwarder=request.app[forwarder_key],
            policy=policy,
            profile_client_id=client_id,
            profile_name=name,
            noted_client_ids=process.local_token_client_ids,
        )

    return respond


async def answer_or_forward(
    request: web.Request,
    exchange: Exchange,
    *,
    forwarder: Forwarder,
    policy: GuardPolicy,
    profile_client_id: str,
    profile_name: str | None,
    noted_client_ids: set[str],
) -> web.StreamResponse:
    """The placeholder for a client_credentials request; anything else to Criteo,
    once the method and path rules (which the guards left to us) admit it."""
    body = await forwarder.read_body(request)
    client_id = client_credentials_asked(request, body)
    if client_id is None:
        check_method_and_path(policy, request.method, request.path, exchange.target, reserved=False)
        return await forwarder.handle(request, exchange, body)
    exchange.bytes_in = body.size
    if client_id and client_id != profile_client_id:
        _note_other_client(client_id, profile_client_id, profile_name, noted_client_ids)
    return build_placeholder_response()


def client_credentials_asked(request: web.Request, body: RequestBody) -> str | None:
    """The client id (maybe empty) of a whole form body asking for client_credentials;
    None for anything else. Never returns or looks at more than the id."""
    data = body.whole
    if (
        data is None
        or request.method != "POST"
        or request.content_type != _FORM
        or "Content-Encoding" in request.headers
    ):
        return None
    try:
        fields = urllib.parse.parse_qs(data.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return None
    if fields.get("grant_type") != ["client_credentials"]:
        return None
    client_ids = fields.get("client_id")
    return client_ids[0] if client_ids else _basic_user(request.headers.get("Authorization"))


def _basic_user(authorization: str | None) -> str:
    """The user part of ``Authorization: Basic``, the client id; never the password."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return urllib.parse.unquote(decoded.partition(":")[0])


def build_placeholder_response() -> web.Response:
    placeholder = {
        "access_token": PLACEHOLDER_PREFIX + secrets.token_hex(16),
        "token_type": "Bearer",
        "refresh_token": None,
        "expires_in": _LIFETIME_SECONDS,
    }
    return web.Response(
        body=json.dumps(placeholder, separators=(",", ":")).encode(),
        content_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _note_other_client(
    client_id: str, profile_client_id: str, profile_name: str | None, noted: set[str]
) -> None:
    """Once per process and id: the client believes it is another app; it is not."""
    if client_id in noted or len(noted) >= _MAX_CLIENT_IDS_NOTED:
        return
    noted.add(client_id)
    whose = f"profile {profile_name}'s" if profile_name else "the proxy's"
    log.info(
        "a client asked /oauth2/token for client_id %r; answered locally: its calls use "
        "%s app (client id %s)",
        client_id[:_MAX_CLIENT_ID_SHOWN],
        whose,
        profile_client_id,
    )
