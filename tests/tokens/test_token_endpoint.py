"""The token endpoint: the request sent to it, the answers read from it, and its failures.

DESIGN §3.3, through a real proxy in front of the fake Criteo or a stand-in token
endpoint on loopback whose answer a test chooses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import ManualClock, StartProxy
from tests.tokens import through_proxy
from tests.tokens.through_proxy import ERROR_HEADER, ME, error_of

# The fake of these tests records every API attempt: through_proxy's fixtures, for this module.
attempts = through_proxy.attempts
criteo_server = through_proxy.criteo_server


# --- helpers -----------------------------------------------------------------------------


def free_closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class TokenServer:
    """A stand-in token endpoint on loopback whose answer a test chooses."""

    answer: Callable[[dict[str, str]], web.Response]
    url: str = ""
    forms: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
async def token_server(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TokenServer:
    server = TokenServer(answer=lambda form: web.Response(status=500))

    async def token(request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        server.forms.append(form)
        return server.answer(form)

    app = web.Application()
    app.router.add_post("/oauth2/token", token)
    test_server = await aiohttp_server(app)
    server.url = str(test_server.make_url("/oauth2/token"))
    return server


# --- 3.3: what the token request looks like --------------------------------------------


async def test_token_request_is_form_encoded_with_the_client_credentials(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock
) -> None:
    client_id, client_secret = "app id/7", "s&cr=t+%20 ü"  # needs real form encoding
    criteo.clients = {client_id: client_secret}
    proxy = await start_proxy(
        credentials={"client_id": client_id, "client_secret": client_secret}, clock=clock
    )
    resp = await proxy.get(ME)
    assert resp.status == 200
    (seen,) = criteo.token_requests
    assert seen.content_type.split(";")[0].strip() == "application/x-www-form-urlencoded"
    assert seen.form == {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
    }


# --- 3.3: token endpoint failures ---------------------------------------------------------


async def test_rejected_credentials_are_a_502_token_request_failed_without_leaking_secrets(
    start_proxy: StartProxy,
    criteo: FakeCriteo,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "proxy-s3cret-7f3a9c"
    criteo.clients = {"app-7": secret}
    proxy = await start_proxy(
        credentials={"client_id": "app-7", "client_secret": secret}, clock=clock
    )
    bodies = []
    ok = await proxy.get(ME)
    assert ok.status == 200
    bodies.append(await ok.read())
    access_tokens = set(criteo.issued)
    assert access_tokens

    criteo.clients = {"app-7": "rotated-elsewhere"}
    criteo.revoke_tokens()
    resp = await proxy.get(ME)

    assert resp.status == 502
    assert resp.headers[ERROR_HEADER] == "token_request_failed"
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.read()
    bodies.append(body)
    error = error_of(body)
    assert error["type"] == "proxy"
    assert error["code"] == "token_request_failed"
    assert error["title"] == "Could not obtain an access token"
    assert error["traceId"] == resp.headers["X-Request-Id"]
    assert "invalid_client" in error["detail"]
    assert "CRITEO_CLIENT_ID" in error["detail"]
    assert "CRITEO_CLIENT_SECRET" in error["detail"]

    ready = await proxy.get("/_proxy/ready")
    assert ready.status == 503
    bodies.append(await ready.read())

    logged = [r.getMessage() for r in caplog.records] + [caplog.text]
    for text in [b.decode() for b in bodies] + logged:
        assert secret not in text
        for token in access_tokens:
            assert token not in text


async def test_unreachable_token_endpoint_is_a_502_token_endpoint_unavailable(
    start_proxy: StartProxy, clock: ManualClock
) -> None:
    port = free_closed_port()
    proxy = await start_proxy(
        upstream={"token_url": f"http://127.0.0.1:{port}/oauth2/token"}, clock=clock
    )
    resp = await proxy.get(ME)
    assert resp.status == 502
    assert resp.headers[ERROR_HEADER] == "token_endpoint_unavailable"
    assert f"127.0.0.1:{port}" in error_of(await resp.read())["detail"]


async def test_hanging_token_endpoint_is_a_504_after_response_timeout(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock
) -> None:
    never = asyncio.Event()
    criteo.token_gate = never.wait
    try:
        proxy = await start_proxy(upstream={"response_timeout": 0.3}, clock=clock)
        resp = await proxy.get(ME)
        assert resp.status == 504
        assert resp.headers[ERROR_HEADER] == "token_endpoint_unavailable"
        assert "0.3 s" in error_of(await resp.read())["detail"]
    finally:
        never.set()  # let the fake's held handlers finish before it shuts down


MALFORMED_ANSWERS = {
    "not JSON": b"<html>502 Bad Gateway</html>",
    "JSON but not an object": b'["access_token"]',
    "no access_token": b'{"token_type":"Bearer","expires_in":900}',
    "empty access_token": b'{"access_token":"","token_type":"Bearer","expires_in":900}',
    "no expires_in": b'{"access_token":"abc","token_type":"Bearer"}',
    "negative expires_in": b'{"access_token":"abc","token_type":"Bearer","expires_in":-5}',
    "zero expires_in": b'{"access_token":"abc","token_type":"Bearer","expires_in":0}',
    "string expires_in": b'{"access_token":"abc","token_type":"Bearer","expires_in":"900"}',
    "boolean expires_in": b'{"access_token":"abc","token_type":"Bearer","expires_in":true}',
    "mac token_type": b'{"access_token":"abc","token_type":"mac","expires_in":900}',
    "numeric refresh_token": (
        b'{"access_token":"abc","token_type":"Bearer","expires_in":900,"refresh_token":5}'
    ),
}


@pytest.mark.parametrize("answer", MALFORMED_ANSWERS.values(), ids=MALFORMED_ANSWERS.keys())
async def test_malformed_token_answer_is_a_502_token_endpoint_unavailable(
    start_proxy: StartProxy,
    token_server: TokenServer,
    criteo: FakeCriteo,
    clock: ManualClock,
    answer: bytes,
) -> None:
    token_server.answer = lambda form: web.Response(
        status=200, body=answer, content_type="application/json"
    )
    proxy = await start_proxy(upstream={"token_url": token_server.url}, clock=clock)
    resp = await proxy.get(ME)
    assert resp.status == 502
    assert resp.headers[ERROR_HEADER] == "token_endpoint_unavailable"
    assert "malformed" in error_of(await resp.read())["detail"]
    assert criteo.requests == []  # nothing went to the API without a usable token


@pytest.mark.parametrize("refresh_token", ["null", "absent"])
async def test_token_answer_with_null_or_absent_refresh_token_is_accepted(
    start_proxy: StartProxy,
    token_server: TokenServer,
    criteo: FakeCriteo,
    clock: ManualClock,
    refresh_token: str,
) -> None:
    def answer(form: dict[str, str]) -> web.Response:
        body: dict[str, object] = {
            "access_token": criteo.issue_token(),
            "token_type": "Bearer",
            "expires_in": 900,
        }
        if refresh_token == "null":
            body["refresh_token"] = None
        return web.json_response(body)

    token_server.answer = answer
    proxy = await start_proxy(upstream={"token_url": token_server.url}, clock=clock)
    resp = await proxy.get(ME)
    assert resp.status == 200
    assert len(token_server.forms) == 1


async def test_client_secret_echoed_by_the_token_endpoint_is_redacted(
    start_proxy: StartProxy,
    token_server: TokenServer,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "echo-me-s3cret-41d2"
    token_server.answer = lambda form: web.json_response(
        {
            "error": "invalid_client",
            "error_description": f"client_secret {form.get('client_secret')} is invalid",
        },
        status=401,
    )
    proxy = await start_proxy(
        upstream={"token_url": token_server.url},
        credentials={"client_id": "app-9", "client_secret": secret},
        clock=clock,
    )
    resp = await proxy.get(ME)
    assert resp.status == 502
    assert resp.headers[ERROR_HEADER] == "token_request_failed"
    body = (await resp.read()).decode()
    detail = error_of(body.encode())["detail"]
    assert "client_secret *** is invalid" in detail
    assert secret not in body
    assert token_server.forms[0]["client_secret"] == secret  # it really was echoed
    assert secret not in caplog.text
    assert all(secret not in r.getMessage() for r in caplog.records)


async def test_token_answer_arriving_in_two_pieces_is_read_whole(
    start_proxy: StartProxy,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    criteo: FakeCriteo,
    clock: ManualClock,
) -> None:
    """A body split across TCP segments (TLS records, chunks) is one answer, not a malformed one."""
    first_part_sent = asyncio.Event()
    send_the_rest = asyncio.Event()

    async def token(request: web.Request) -> web.StreamResponse:
        await request.post()
        body = json.dumps(
            {"access_token": criteo.issue_token(), "token_type": "Bearer", "expires_in": 900}
        ).encode()
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[:40])
        first_part_sent.set()
        await send_the_rest.wait()
        await resp.write(body[40:])
        return resp

    app = web.Application()
    app.router.add_post("/oauth2/token", token)
    server = await aiohttp_server(app)
    proxy = await start_proxy(
        upstream={"token_url": str(server.make_url("/oauth2/token"))}, clock=clock
    )
    request = asyncio.create_task(proxy.get(ME))
    await first_part_sent.wait()
    # Not a sleep to wait for something: a bound on something that must NOT happen.
    answered_early, _ = await asyncio.wait({request}, timeout=0.5)
    send_the_rest.set()
    resp = await request
    assert not answered_early, await resp.text()
    assert resp.status == 200
