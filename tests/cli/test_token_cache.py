"""The cache of ``criteo-proxy token``: reused while valid, 0600, renewed, ignored when unsafe."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path

import aiohttp
import pytest

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from tests.cli.conftest import API_PATH
from tests.conftest import (
    StartCliServer,
    assert_absent,
    assert_one_line_error,
    cli_command,
    demo_env,
    run_cli,
)

# --- the token cache of `criteo-proxy token` ---------------------------------------------------


def cache_file(private_cache: Path) -> Path:
    return private_cache / "criteo-proxy" / "token-default.json"


async def test_token_reuses_a_valid_token_from_its_own_0600_cache(
    criteo: FakeCriteo, criteo_url: str, private_cache: Path
) -> None:
    first = await run_cli("token", "--upstream", criteo_url, env=demo_env())
    second = await run_cli("token", "--upstream", criteo_url, env=demo_env())
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert len(criteo.token_requests) == 1
    path = cache_file(private_cache)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    entry = json.loads(path.read_text())
    assert entry["client_id"] == DEMO_CLIENT_ID
    assert entry["token_url"] == criteo_url + "/oauth2/token"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    assert DEMO_CLIENT_SECRET not in path.read_text()

    fresh = await run_cli("token", "--fresh", "--upstream", criteo_url, env=demo_env())
    assert fresh.returncode == 0
    assert fresh.stdout != first.stdout
    assert len(criteo.token_requests) == 2
    assert json.loads(path.read_text())["access_token"] == fresh.stdout.strip()


async def test_token_renews_once_the_cached_one_is_within_the_refresh_margin(
    criteo: FakeCriteo, criteo_url: str, private_cache: Path
) -> None:
    assert (await run_cli("token", "--upstream", criteo_url, env=demo_env())).returncode == 0
    path = cache_file(private_cache)
    entry = json.loads(path.read_text())
    entry["expires_at"] = time.time() + 59  # less than tokens.refresh_margin (60 s) left
    path.write_text(json.dumps(entry))
    again = await run_cli("token", "--upstream", criteo_url, env=demo_env())
    assert again.returncode == 0
    assert len(criteo.token_requests) == 2
    entry["expires_at"] = time.time() + 61
    entry["access_token"] = again.stdout.strip()
    path.write_text(json.dumps(entry))
    assert (await run_cli("token", "--upstream", criteo_url, env=demo_env())).returncode == 0
    assert len(criteo.token_requests) == 2


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"client_id": "someone-else", "token_url": "x", "access_token": "t", '
        '"expires_in": 900, "expires_at": 9999999999}',
        "\x00\xff",
    ],
    ids=["corrupt", "not-an-object", "foreign", "binary"],
)
async def test_a_corrupt_or_foreign_cache_file_is_ignored_and_replaced(
    criteo: FakeCriteo, criteo_url: str, private_cache: Path, content: str
) -> None:
    path = cache_file(private_cache)
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_text(content, encoding="latin-1")
    path.chmod(0o600)
    result = await run_cli("token", "--upstream", criteo_url, env=demo_env())
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() in criteo.issued
    assert json.loads(path.read_text())["access_token"] == result.stdout.strip()


async def test_a_cache_file_readable_by_others_is_not_trusted(
    criteo: FakeCriteo, criteo_url: str, private_cache: Path
) -> None:
    assert (await run_cli("token", "--upstream", criteo_url, env=demo_env())).returncode == 0
    path = cache_file(private_cache)
    path.chmod(0o644)
    assert (await run_cli("token", "--upstream", criteo_url, env=demo_env())).returncode == 0
    assert len(criteo.token_requests) == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_only_token_ever_prints_the_cached_token(
    criteo: FakeCriteo, criteo_url: str, start_cli_server: StartCliServer
) -> None:
    token = (await run_cli("token", "--upstream", criteo_url, env=demo_env())).stdout.strip()
    checked = await run_cli(
        "check", "--upstream", criteo_url, "--log-level", "debug", env=demo_env()
    )
    assert checked.returncode == 0
    server = await start_cli_server(
        "--upstream", criteo_url, "--port", "0", "--log-level", "debug", env=demo_env()
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + API_PATH) as resp:
            assert resp.status == 200
        async with http.get(server.url + "/_proxy/status") as resp:
            status_text = await resp.text()
    assert await server.stop() == 0
    assert_absent(
        {token}, checked.stdout, checked.stderr, server.stdout, server.stderr, status_text
    )


async def test_a_secret_that_is_not_text_is_one_line_on_either_path(
    criteo: FakeCriteo, criteo_url: str
) -> None:
    env = {**demo_env(), "CRITEO_CLIENT_SECRET": "ab\udcff"}  # the bytes ab\xff
    for args in (["token"], ["token", "--profile", "default"]):  # the quick path, the full
        result = await run_cli(*args, "--upstream", criteo_url, env=env)
        assert_one_line_error(result, 1, "UnicodeEncodeError")
    assert criteo.token_requests == []


async def test_a_cached_token_for_a_reader_that_left_is_no_traceback(
    criteo_url: str, private_cache: Path
) -> None:
    assert (await run_cli("token", "--upstream", criteo_url, env=demo_env())).returncode == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `criteo-proxy token | head -c0` leaves it
    try:
        process = await asyncio.create_subprocess_exec(
            *cli_command(),
            "token",
            "--upstream",
            criteo_url,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
            env=demo_env(),
        )
    finally:
        os.close(write_end)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert stderr.decode() == ""
