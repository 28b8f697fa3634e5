"""Refresh tokens at run time: refresh, rotation, restart and crash, single flight, rejection.

DESIGN.md §3.4. The server runs as a subprocess against the fake Criteo (sections
6-8), or in process for single flight and a refresh token Criteo rejects (9-10).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from proxy.tokens.store import TokenStore
from tests.conftest import (
    CliServer,
    ManualClock,
    StartCliServer,
    StartProxy,
    assert_absent,
    demo_env,
    run_cli,
)
from tests.tokens.conftest import AUTHORIZE_AGAIN, REDIRECT_URI, stored_token

API_PATH = "/2026-07/advertisers/me"


# --- helpers ------------------------------------------------------------------------------


def refresh_grants(criteo: FakeCriteo) -> list[dict[str, str]]:
    return [r.form for r in criteo.token_requests if r.form.get("grant_type") == "refresh_token"]


def live_refresh_token(criteo: FakeCriteo) -> str:
    """With strict rotation exactly one refresh token is alive at Criteo: the newest."""
    assert len(criteo.refresh_tokens) == 1, criteo.refresh_tokens
    return next(iter(criteo.refresh_tokens))


async def authorize_with_code(criteo: FakeCriteo, config_file: Path, store_path: Path) -> str:
    """The advertiser consents and ``authorize --code`` stores the refresh token; returns it."""
    code = criteo.consent(DEMO_CLIENT_ID, REDIRECT_URI)
    result = await run_cli(
        "authorize",
        f"--code={code}",
        "--redirect-uri",
        REDIRECT_URI,
        "--config",
        str(config_file),
        env=demo_env(),
    )
    assert result.returncode == 0, result.stderr
    return stored_token(store_path)


def record_store_on_api_calls(
    criteo: FakeCriteo, store_path: Path
) -> list[tuple[str | None, str, str]]:
    """Answer API_PATH like Criteo, noting (access token, stored, newest at Criteo) each time."""
    seen: list[tuple[str | None, str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        seen.append((token, stored_token(store_path), list(criteo.refresh_tokens)[-1]))
        return web.json_response({"data": [], "errors": [], "warnings": []})

    criteo.handlers[API_PATH] = handler
    return seen


async def get_ok(http: aiohttp.ClientSession, server: CliServer) -> None:
    async with http.get(server.url + API_PATH) as resp:
        assert resp.status == 200, await resp.text()


# --- 6-8. the server: refresh, rotation, restart, crash ------------------------------------


async def test_server_refreshes_with_the_stored_token_and_stores_the_rotated_one_before_use(
    criteo: FakeCriteo,
    config_file: Path,
    store_path: Path,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    first = await authorize_with_code(criteo, config_file, store_path)
    seen = record_store_on_api_calls(criteo, store_path)

    server = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, server)
    criteo.revoke_tokens()  # the next call gets 401: the proxy refreshes in the request
    await get_ok(http, server)

    grants = refresh_grants(criteo)
    assert grants[0]["refresh_token"] == first
    assert grants[0]["client_id"] == DEMO_CLIENT_ID
    assert all(
        r.content_type.startswith("application/x-www-form-urlencoded")
        for r in criteo.token_requests
    )
    for previous, grant in itertools.pairwise(grants):
        assert grant["refresh_token"] != previous["refresh_token"]  # always the newest one
    newest = live_refresh_token(criteo)
    assert first not in criteo.refresh_tokens
    assert stored_token(store_path) == newest
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    # The fake runs the handler only for a valid access token: each one reached Criteo
    # only once the refresh token of its answer was on disk.
    assert len(seen) == 2
    assert seen[0][0] != seen[1][0]  # the second call used the access token of a new refresh
    for _token, on_disk, newest_then in seen:
        assert on_disk == newest_then
    assert await server.stop() == 0
    assert_absent({first, newest, DEMO_CLIENT_SECRET}, server.stdout, server.stderr)


async def test_a_restart_reuses_the_refresh_token_written_by_the_previous_run(
    criteo: FakeCriteo,
    config_file: Path,
    store_path: Path,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    await authorize_with_code(criteo, config_file, store_path)
    server = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, server)
    assert await server.stop() == 0
    written = stored_token(store_path)
    grants_before = len(refresh_grants(criteo))

    again = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, again)

    new_grants = refresh_grants(criteo)[grants_before:]
    assert new_grants
    assert new_grants[0]["refresh_token"] == written
    assert stored_token(store_path) == live_refresh_token(criteo)
    assert await again.stop() == 0


async def test_after_sigkill_right_after_a_refresh_the_file_holds_the_newest_token(
    criteo: FakeCriteo,
    config_file: Path,
    store_path: Path,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    await authorize_with_code(criteo, config_file, store_path)
    server = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, server)
    criteo.revoke_tokens()
    await get_ok(http, server)  # a refresh (with rotation) just happened

    server.process.kill()
    await server.process.wait()

    on_disk = stored_token(store_path)
    assert on_disk == live_refresh_token(criteo)  # strict: only the newest is alive
    grants_before = len(refresh_grants(criteo))
    again = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, again)
    assert refresh_grants(criteo)[grants_before]["refresh_token"] == on_disk
    assert await again.stop() == 0


async def test_a_rotation_lost_before_it_was_written_says_to_run_authorize_again(
    criteo: FakeCriteo,
    criteo_url: str,
    config_file: Path,
    store_path: Path,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    on_disk = await authorize_with_code(criteo, config_file, store_path)
    before = store_path.read_bytes()
    # Criteo rotated, but the process died with the answer: the file holds a dead token.
    form = {
        "grant_type": "refresh_token",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "refresh_token": on_disk,
    }
    async with http.post(criteo_url + "/oauth2/token", data=form) as resp:
        assert resp.status == 200
        lost = (await resp.json())["refresh_token"]

    server = await start_cli_server("--config", str(config_file), env=demo_env())
    async with http.get(server.url + API_PATH) as resp:
        assert resp.status == 502
        assert resp.headers["X-Criteo-Proxy-Error"] == "token_request_failed"
        detail = (await resp.json())["errors"][0]["detail"]
    async with http.get(server.url + "/_proxy/ready") as resp:
        assert resp.status == 503
        reason = (await resp.json())["reason"]

    for text in (detail, reason):
        assert AUTHORIZE_AGAIN in text
        assert "again" in text
        assert str(store_path) in text
    assert store_path.read_bytes() == before
    assert await server.stop() == 0
    assert AUTHORIZE_AGAIN in server.stderr  # the log says it too
    assert_absent({on_disk, lost, DEMO_CLIENT_SECRET}, detail, reason, server.stdout, server.stderr)


async def test_with_lenient_rotation_an_older_copy_of_the_store_still_works(
    criteo: FakeCriteo,
    config_file: Path,
    store_path: Path,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    criteo.strict_rotation = False
    old = await authorize_with_code(criteo, config_file, store_path)
    old_copy = store_path.read_bytes()
    server = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, server)
    criteo.revoke_tokens()
    await get_ok(http, server)
    server.process.kill()
    await server.process.wait()
    assert stored_token(store_path) != old  # it did rotate and store
    assert old in criteo.refresh_tokens  # but the old one stays valid

    store_path.write_bytes(old_copy)  # back to the older copy (still 0600)
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    grants_before = len(refresh_grants(criteo))
    again = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, again)

    assert refresh_grants(criteo)[grants_before]["refresh_token"] == old
    assert await again.stop() == 0


# --- 9-10. in process: single flight, a dead refresh token -------------------------------


def auth_code_sections(store_path: Path) -> dict[str, Any]:
    return {
        "credentials": {
            "grant_type": "authorization_code",
            "redirect_uri": REDIRECT_URI,
            "token_store": str(store_path),
        }
    }


async def start_auth_code_proxy(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock, store_path: Path
) -> tuple[TestClient[Any, Any], str]:
    """A proxy whose store holds a refresh token Criteo issued; ready (the first refresh done)."""
    issued = "rt-issued-by-criteo"
    criteo.refresh_tokens[issued] = DEMO_CLIENT_ID
    TokenStore(str(store_path)).save(DEMO_CLIENT_ID, issued)
    client = await start_proxy(clock=clock, **auth_code_sections(store_path))
    resp = await client.get("/_proxy/ready")
    assert resp.status == 200, await resp.text()
    return client, issued


@pytest.mark.parametrize("how", ["expired", "revoked"])
async def test_fifty_concurrent_requests_needing_a_token_cause_one_refresh_with_strict_rotation(
    how: str, start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock, store_path: Path
) -> None:
    client, issued = await start_auth_code_proxy(start_proxy, criteo, clock, store_path)
    assert [g["refresh_token"] for g in refresh_grants(criteo)] == [issued]
    rotated = stored_token(store_path)
    if how == "expired":
        clock.advance(criteo.expires_in + 1)
    else:
        criteo.revoke_tokens()

    async def one() -> int:
        resp = await client.get(API_PATH)
        await resp.read()
        return resp.status

    statuses = await asyncio.gather(*(one() for _ in range(50)))

    assert statuses == [200] * 50
    grants = refresh_grants(criteo)
    assert len(grants) == 2  # the warm-up's, then exactly one for all fifty
    assert grants[1]["refresh_token"] == rotated
    assert stored_token(store_path) == live_refresh_token(criteo)
    assert stored_token(store_path) != rotated


async def test_a_refresh_token_criteo_rejects_gives_502_saying_to_authorize_again_and_keeps_file(
    start_proxy: StartProxy,
    criteo: FakeCriteo,
    clock: ManualClock,
    store_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client, issued = await start_auth_code_proxy(start_proxy, criteo, clock, store_path)
    current = stored_token(store_path)
    before = store_path.read_bytes()
    criteo.refresh_tokens.clear()  # Criteo no longer knows it (revoked consent, lost rotation)
    clock.advance(criteo.expires_in + 1)  # the access token is gone too

    bodies: list[str] = []
    for _ in range(3):
        resp = await client.get(API_PATH)
        body = await resp.text()
        bodies.append(body)
        assert resp.status == 502, body
        assert resp.headers["X-Criteo-Proxy-Error"] == "token_request_failed"
        error = json.loads(body)["errors"][0]
        assert error["code"] == "token_request_failed"
        assert AUTHORIZE_AGAIN in error["detail"]
        assert "again" in error["detail"]
    resp = await client.get("/_proxy/ready")
    body = await resp.text()
    bodies.append(body)
    assert resp.status == 503
    assert AUTHORIZE_AGAIN in json.loads(body)["reason"]

    assert store_path.read_bytes() == before
    assert any(AUTHORIZE_AGAIN in record.getMessage() for record in caplog.records)
    assert_absent({issued, current, DEMO_CLIENT_SECRET}, *bodies, caplog.text)
