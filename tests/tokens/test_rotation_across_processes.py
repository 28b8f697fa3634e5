"""A refresh token is never lost: not to a second process rotating the same store, nor
to a shutdown in the middle of a refresh (issue 20, items 3 and 4).

The server and the one-shot commands run as the installed ``criteo-proxy``; the fake
Criteo rotates strictly (a refresh token works once) and serves in the test's loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from proxy.fakes.criteo import DEMO_CLIENT_ID, FakeCriteo
from proxy.tokens.store import TokenStore
from tests.conftest import StartCliServer, demo_env, run_cli
from tests.tokens.conftest import write_code_app_config

API_PATH = "/2026-07/advertisers/me"


def _live_refresh_tokens(criteo: FakeCriteo) -> list[str]:
    return list(criteo.refresh_tokens)


class Gate:
    """Holds the fake's token endpoint: tells when a request arrived, lets it go on open()."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self._open = asyncio.Event()
        self.waiting = 0

    async def __call__(self) -> None:
        self.waiting += 1
        self.arrived.set()
        await self._open.wait()

    def open(self) -> None:
        self._open.set()


@pytest.fixture
def store_path(tmp_path: Path, criteo: FakeCriteo) -> Path:
    """A store holding a refresh token the fake will accept once."""
    path = tmp_path / "store" / "tokens.json"
    refresh_token = "rt-first"
    criteo.refresh_tokens[refresh_token] = DEMO_CLIENT_ID
    TokenStore(str(path)).save(DEMO_CLIENT_ID, refresh_token)
    return path


@pytest.fixture
def config_file(tmp_path: Path, criteo_url: str, store_path: Path) -> Path:
    path = tmp_path / "criteo-proxy.yaml"
    return write_code_app_config(path, criteo_url, store_path, shutdown_grace=10)


def _stored(path: Path) -> str:
    return TokenStore(str(path)).load().refresh_token


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url + API_PATH) as answer:
        return answer.status, await answer.text()


async def _blocked_on_lock(lock_path: Path) -> None:
    """Until some process waits for LOCK_PATH's flock (a "->" line of /proc/locks)."""
    inode = lock_path.stat().st_ino
    async with asyncio.timeout(10):
        while not any(  # noqa: ASYNC110 - the kernel's lock table has no event to await
            line.split()[1] == "->" and line.split()[-3].endswith(f":{inode}")
            for line in Path("/proc/locks").read_text().splitlines()
            if len(line.split()) > 5
        ):
            await asyncio.sleep(0.01)


async def test_token_and_check_under_a_running_server_leave_it_a_valid_refresh_token(
    start_cli_server: StartCliServer, criteo: FakeCriteo, config_file: Path, store_path: Path
) -> None:
    server = await start_cli_server("--config", str(config_file), env=demo_env())
    assert (await _get(server.url))[0] == 200  # the server rotated once
    for command in ("token", "check"):
        result = await run_cli(command, "--config", str(config_file), env=demo_env())
        assert result.returncode == 0, result.stderr
        if command == "token":  # a fresh token next time, not the cached one
            cache = await run_cli("token", "--fresh", "--config", str(config_file), env=demo_env())
            assert cache.returncode == 0, cache.stderr
    # Each command rotated the refresh token the server had read at start; the server's
    # next refresh must use the one in the store, not the spent one in its memory.
    criteo.revoke_tokens()  # the server's access token gets a 401: it must refresh
    status, body = await _get(server.url)
    assert status == 200, body
    assert _live_refresh_tokens(criteo) == [_stored(store_path)]
    assert "invalid_grant" not in server.stderr
    assert await server.stop() == 0


async def test_two_processes_never_send_one_refresh_token_twice(
    start_cli_server: StartCliServer, criteo: FakeCriteo, config_file: Path, store_path: Path
) -> None:
    gate = Gate()
    criteo.token_gate = gate
    server = await start_cli_server("--config", str(config_file), env=demo_env())
    await gate.arrived.wait()  # the server's warm-up refresh holds the store's lock
    one_shot = asyncio.create_task(
        run_cli("token", "--fresh", "--config", str(config_file), env=demo_env())
    )
    await _blocked_on_lock(TokenStore(str(store_path)).lock_path)
    assert gate.waiting == 1  # the command waits for the lock: Criteo saw no second refresh
    gate.open()
    result = await one_shot
    assert result.returncode == 0, result.stderr
    forms = [r.form for r in criteo.token_requests]
    sent = [form["refresh_token"] for form in forms if form.get("grant_type") == "refresh_token"]
    assert len(sent) == 2
    assert len(set(sent)) == 2  # each refresh token went to Criteo once
    assert _live_refresh_tokens(criteo) == [_stored(store_path)]
    assert await server.stop() == 0


async def test_invalid_grant_makes_the_server_read_its_store_again_first(
    start_cli_server: StartCliServer, criteo: FakeCriteo, config_file: Path, store_path: Path
) -> None:
    """The store was replaced without the lock (a restored copy, an older tool): the
    refusal of the token in memory is not the last word."""
    server = await start_cli_server("--config", str(config_file), env=demo_env())
    assert (await _get(server.url))[0] == 200
    gate = Gate()
    criteo.token_gate = gate
    criteo.revoke_tokens()
    request = asyncio.create_task(_get(server.url))
    await gate.arrived.wait()  # the server has read the store and sent its token
    (spent,) = criteo.refresh_tokens
    del criteo.refresh_tokens[spent]  # refused: invalid_grant
    criteo.refresh_tokens["rt-restored"] = DEMO_CLIENT_ID
    TokenStore(str(store_path)).save(DEMO_CLIENT_ID, "rt-restored", generation=7)
    gate.open()
    status, body = await request
    assert status == 200, body
    assert "rt-restored" not in _live_refresh_tokens(criteo)  # spent by the retry
    assert _live_refresh_tokens(criteo) == [_stored(store_path)]
    assert TokenStore(str(store_path)).load().generation == 8
    assert await server.stop() == 0


async def test_sigterm_during_a_refresh_lets_it_finish_and_store_the_rotated_token(
    start_cli_server: StartCliServer, criteo: FakeCriteo, config_file: Path, store_path: Path
) -> None:
    gate = Gate()
    criteo.token_gate = gate
    server = await start_cli_server("--config", str(config_file), env=demo_env())
    await gate.arrived.wait()  # the warm-up refresh is at Criteo
    server.process.terminate()
    await server.wait_for_output(lambda: "waiting up to" in server.stderr)
    gate.open()  # Criteo rotates now
    await asyncio.wait_for(server.process.wait(), 15)  # one signal: no second one from stop()
    code = await server.stop()
    assert code == 0, server.stderr
    assert _live_refresh_tokens(criteo) == [_stored(store_path)]
    assert "stored the rotated refresh token" in server.stderr
    assert "shutdown cut a refresh" not in server.stderr


async def test_a_refresh_that_outlasts_the_grace_is_logged_as_lost_with_the_fix(
    start_cli_server: StartCliServer, criteo: FakeCriteo, config_file: Path, tmp_path: Path
) -> None:
    config = json.loads(config_file.read_text())
    config["listen"]["shutdown_grace"] = 0.3
    config_file.write_text(json.dumps(config))
    gate = Gate()
    criteo.token_gate = gate
    server = await start_cli_server("--config", str(config_file), env=demo_env())
    await gate.arrived.wait()
    try:
        assert await server.stop() == 0
    finally:
        gate.open()
    lost = [line for line in server.stderr_lines if "shutdown cut a refresh" in line]
    assert len(lost) == 1, server.stderr
    assert "criteo-proxy authorize" in lost[0]
    assert "Traceback" not in server.stderr
