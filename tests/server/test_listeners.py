"""Listening sockets: the Unix socket is owner-only, binding beyond loopback without keys warns."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import aiohttp

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

# --- Unix socket ------------------------------------------------------------------------


def short_socket_path(tmp_path: Path) -> str:
    # AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    return str(Path(os.environ.get("TMPDIR", "/tmp")) / f"cp-{os.getpid()}-{id(tmp_path)}.sock")


async def test_unix_socket_is_owner_only_and_serves(
    start_cli_server: Any, criteo_url: str, tmp_path: Path
) -> None:
    from tests.conftest import clean_env

    path = short_socket_path(tmp_path)
    # a stale socket file from a crashed run is replaced
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    config = tmp_path / "c.yaml"
    config.write_text(f"listen:\n  unix_socket: {path}\nupstream:\n  url: {criteo_url}\n")
    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
    server = await start_cli_server("--config", str(config), env=env)
    try:
        assert server.url == f"unix:{path}"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        connector = aiohttp.UnixConnector(path=path)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get("http://localhost/2026-07/advertisers/me") as resp,
        ):
            assert resp.status == 200
    finally:
        assert await server.stop() == 0
        Path(path).unlink(missing_ok=True)


async def test_unix_socket_path_that_is_a_regular_file_is_an_error(
    criteo_url: str, tmp_path: Path
) -> None:
    from tests.conftest import clean_env, run_cli

    path = short_socket_path(tmp_path)
    Path(path).write_text("not a socket")
    try:
        config = tmp_path / "c.yaml"
        config.write_text(f"listen:\n  unix_socket: {path}\nupstream:\n  url: {criteo_url}\n")
        env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
        result = await run_cli("--config", str(config), env=env)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"criteo-proxy: listen.unix_socket: {path} exists and is not a socket; "
            "remove it or pick another path"
        ]
        assert Path(path).read_text() == "not a socket"  # nothing lost
    finally:
        os.unlink(path)


# --- binding beyond loopback ------------------------------------------------------------


async def test_binding_beyond_loopback_without_keys_warns_loudly(
    start_cli_server: Any, criteo_url: str
) -> None:
    """0.0.0.0 without security.api_keys: the start says the token is exposed (no traffic sent)."""
    from tests.conftest import clean_env

    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
    server = await start_cli_server(
        "--host", "0.0.0.0", "--port", "0", "--upstream", criteo_url, env=env
    )
    assert await server.stop() == 0
    warnings = [line for line in server.stderr_lines if "without security.api_keys" in line]
    assert len(warnings) == 1
    assert "WARNING" in warnings[0]
    assert "127.0.0.1:8080:8080" in warnings[0]


async def test_loopback_bind_does_not_warn(start_cli_server: Any, criteo_url: str) -> None:
    from tests.conftest import clean_env

    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
    server = await start_cli_server("--port", "0", "--upstream", criteo_url, env=env)
    assert await server.stop() == 0
    assert not any("without security.api_keys" in line for line in server.stderr_lines)
