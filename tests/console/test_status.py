"""/_proxy/status and `criteo-proxy status`: token, windows, versions, and never a secret."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from tests.conftest import StartProxy, assert_one_line_error, clean_env, run_cli
from tests.console.conftest import status_of
from tests.ports import free_port

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


# --- /_proxy/status ---------------------------------------------------------------------------


async def test_status_shows_the_token_windows_and_versions_never_the_token(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    criteo.rate_limit = 100
    await proxy.get("/2026-07/advertisers/me")
    await proxy.get("/2026-01/advertisers/me")  # deprecated at the fake
    await proxy.get("/2025-10/advertisers/me")  # retired: 410

    status = await status_of(proxy)
    assert set(status) >= {"version", "uptime_seconds", "upstream", "profiles"}
    assert status["upstream"].startswith("http://127.0.0.1:")
    assert status["uptime_seconds"] >= 0
    [profile] = status["profiles"]
    assert set(profile) >= {"name", "listen", "token", "rate_limits", "versions"}
    assert profile["name"] == "default"
    assert profile["listen"] == f"http://127.0.0.1:{proxy.port}"
    token = profile["token"]
    assert set(token) >= {"grant_type", "client_id", "state", "expires_in_seconds", "last_error"}
    assert token["grant_type"] == "client_credentials"
    assert token["client_id"] == "demo-client"
    assert token["state"] == "valid"
    assert 0 < token["expires_in_seconds"] <= 900
    assert token["last_error"] is None
    [api] = profile["rate_limits"]
    assert set(api) >= {"bucket", "limit", "remaining", "reset_in_seconds", "waiting"}
    assert api["bucket"] == "api"
    assert api["limit"] == 100
    assert api["remaining"] == 97
    assert 0 <= api["reset_in_seconds"] <= 60
    assert api["waiting"] == 0
    versions = {v["version"]: v for v in profile["versions"]}
    assert set(versions) == {"2025-10", "2026-01", "2026-07"}
    for entry in versions.values():
        assert set(entry) >= {"version", "requests", "deprecated", "sunset"}
        assert entry["requests"] == 1
    assert versions["2026-01"]["deprecated"] is True
    assert versions["2026-01"]["sunset"] == "Wed, 27 Jan 2027 00:00:00 GMT"
    assert versions["2026-07"]["deprecated"] is False
    assert versions["2026-07"]["sunset"] is None
    assert versions["2025-10"]["retired"] is True
    for token in criteo.issued:
        assert token not in json.dumps(status)


async def test_status_says_backing_off_with_the_endpoints_words_and_no_secret(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(credentials={"client_secret": "wrong-secret-77"})
    assert (await proxy.get("/2026-07/advertisers/me")).status == 502
    token = (await status_of(proxy))["profiles"][0]["token"]
    assert token["state"] == "backing_off"
    assert token["expires_in_seconds"] is None
    assert "invalid_client" in token["last_error"]
    assert token["backoff_seconds"] > 0
    assert "wrong-secret-77" not in json.dumps(token)


async def test_recent_token_errors_keep_the_helpful_first_one_newest_first_at_most_five(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: Any
) -> None:
    proxy = await start_proxy(credentials={"client_secret": "wrong-secret-78"}, clock=clock)

    async def fail_once() -> list[dict[str, str]]:
        assert (await proxy.get("/2026-07/advertisers/me")).status == 502
        clock.advance(60)  # past the back-off: the next request asks the endpoint again
        recent: list[dict[str, str]] = (await status_of(proxy))["profiles"][0]["token"][
            "recent_errors"
        ]
        return recent

    [first] = await fail_once()
    assert ISO_UTC.fullmatch(first["time"])
    assert "invalid_client" in first["error"]
    assert "CRITEO_CLIENT_SECRET" in first["error"]  # the helpful hint

    criteo.token_failure_status = 503
    recent = await fail_once()
    assert [("invalid_client" in e["error"], "503" in e["error"]) for e in recent] == [
        (False, True),
        (True, False),
    ]
    token = (await status_of(proxy))["profiles"][0]["token"]
    assert "503" in token["last_error"]  # last_error is the last one; the first is kept too

    criteo.token_failure_status = None
    recent = await fail_once()  # the same text again: moved to the front, not repeated
    assert len(recent) == 2
    assert "invalid_client" in recent[0]["error"]
    assert recent[0]["time"] >= recent[1]["time"]

    for status in (500, 502, 504, 520, 521):
        criteo.token_failure_status = status
        recent = await fail_once()
    assert [e["error"].split(" answered ")[1] for e in recent] == [
        "521",
        "520",
        "504",
        "502",
        "500",
    ]
    assert "wrong-secret-78" not in json.dumps(recent)


async def test_recent_token_errors_are_empty_while_the_token_is_fine(
    proxy: TestClient[Any, Any],
) -> None:
    assert (await proxy.get("/2026-07/advertisers/me")).status == 200
    assert (await status_of(proxy))["profiles"][0]["token"]["recent_errors"] == []


# --- criteo-proxy status ----------------------------------------------------------------------


@pytest.fixture
async def keyed_cli_proxy(criteo_url: str, start_cli_server: Any, tmp_path: Any) -> tuple[Any, Any]:
    """The installed proxy, with inbound key k-status-1, and its config file."""
    config = tmp_path / "proxy.yaml"
    config.write_text(
        json.dumps({"upstream": {"url": criteo_url}, "security": {"api_keys": ["k-status-1"]}})
    )
    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
    return await start_cli_server("--config", str(config), "--port", "0", env=env), config


async def test_status_command_prints_tables_from_the_running_proxy(
    keyed_cli_proxy: tuple[Any, Any],
) -> None:
    server, config = keyed_cli_proxy
    port = server.url.rsplit(":", 1)[1]
    async with aiohttp.ClientSession(headers={"X-Proxy-Key": "k-status-1"}) as http:
        async with http.get(server.url + "/2026-07/advertisers/me?api_key=hidden") as resp:
            assert resp.status == 200
        async with http.get(server.url + "/2026-07/nothing") as resp:
            assert resp.status == 404

    # No credentials needed: it asks the proxy (with the config's key), not Criteo.
    result = await run_cli("status", "--config", str(config), "--port", port, env=clean_env())
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"profile default on {server.url}" in out
    assert re.search(r"^valid\s+client_credentials\s+demo-client\s+\d+", out, re.MULTILINE)
    assert re.search(r"GET\s+/2026-07/advertisers/me\?api_key=\*\*\*\s+200", out)
    assert re.search(r"GET\s+/2026-07/nothing\s+404", out)
    assert "hidden" not in out
    assert "k-status-1" not in out + result.stderr

    as_json = await run_cli(
        "status", "--config", str(config), "--url", server.url, "--json", env=clean_env()
    )
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["profiles"][0]["token"]["state"] == "valid"
    assert await server.stop() == 0


async def test_status_command_against_nothing_is_one_line_and_exit_1() -> None:
    port = str(free_port())
    result = await run_cli("status", "--port", port, env=clean_env())
    line = assert_one_line_error(result, 1, f"127.0.0.1:{port}")
    assert "nothing answers" in line
    unix = await run_cli("status", "--url", "unix:/nonexistent/criteo.sock", env=clean_env())
    assert_one_line_error(unix, 1, "unix:/nonexistent/criteo.sock")


async def test_status_command_says_when_the_key_is_missing(
    keyed_cli_proxy: tuple[Any, Any],
) -> None:
    server, _ = keyed_cli_proxy
    result = await run_cli("status", "--url", server.url, env=clean_env())
    assert_one_line_error(result, 1, "401", "proxy_key_required")
    assert await server.stop() == 0


async def test_status_command_shows_the_last_requests_when_the_history_exceeds_one_answer(
    criteo: FakeCriteo, criteo_url: str, start_cli_server: Any
) -> None:
    """An answer of /_proxy/requests stops at its byte bound, oldest first: the command
    asks for the last ones by seq."""

    async def escapes(request: web.Request) -> web.Response:
        # 48,000 bytes of JSON each: the 60 take three answers
        return web.Response(
            status=500, body=b"\x01" * 8000, headers={"Content-Type": "application/json"}
        )

    criteo.handlers["/2026-07/escapes"] = escapes
    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
    server = await start_cli_server("--upstream", criteo_url, "--port", "0", env=env)
    async with aiohttp.ClientSession() as http:
        for i in range(60):
            headers = {"X-Request-Id": f"big-{i:02d}"}
            async with http.get(server.url + "/2026-07/escapes", headers=headers) as resp:
                assert resp.status == 500

    result = await run_cli("status", "--url", server.url, env=clean_env())
    assert result.returncode == 0, result.stderr
    shown = re.findall(r"big-\d\d", result.stdout)
    assert shown == [f"big-{i:02d}" for i in range(40, 60)]


async def test_status_command_reads_a_proxy_on_a_unix_socket_with_its_key(
    criteo_url: str, start_cli_server: Any, tmp_path: Any
) -> None:
    """listen.unix_socket from the config (or --url unix:PATH), the first key sent along."""
    sock = tmp_path / "criteo.sock"
    config = tmp_path / "proxy.yaml"
    config.write_text(
        json.dumps(
            {
                "listen": {"unix_socket": str(sock)},
                "upstream": {"url": criteo_url},
                "security": {"api_keys": ["k-unix-1"]},
            }
        )
    )
    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)
    server = await start_cli_server("--config", str(config), env=env)
    assert server.url == f"unix:{sock}"
    connector = aiohttp.UnixConnector(path=str(sock))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(
            "http://localhost/2026-07/advertisers/me", headers={"X-Proxy-Key": "k-unix-1"}
        ) as resp,
    ):
        assert resp.status == 200

    from_config = await run_cli("status", "--config", str(config), env=clean_env())
    assert from_config.returncode == 0, from_config.stderr
    assert f"profile default on unix:{sock}" in from_config.stdout
    assert re.search(r"GET\s+/2026-07/advertisers/me\s+200", from_config.stdout)

    by_url = await run_cli(
        "status", "--config", str(config), "--url", f"unix:{sock}", "--json", env=clean_env()
    )
    assert by_url.returncode == 0, by_url.stderr
    assert json.loads(by_url.stdout)["profiles"][0]["token"]["state"] == "valid"
    without_key = await run_cli("status", "--url", f"unix:{sock}", env=clean_env())
    assert_one_line_error(without_key, 1, "401", "proxy_key_required")
    assert await server.stop() == 0
