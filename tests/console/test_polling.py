"""The console's own polling stays out of the way (DESIGN 8, issue 22 item 4).

``GET /_proxy/status`` and ``/_proxy/requests`` answered below 400 are logged at
DEBUG only, never in the INFO access log, and never kept in the history,
whoever sends them; refused ones are logged and kept like any request.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import StartCliServer, StartProxy, demo_env

ACCESS_LOGGER = "criteo_proxy.access"
POLLS = ("/_proxy/status", "/_proxy/requests", "/_proxy/requests?after=0&limit=5")


def access_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER and r.levelno == level
    ]


async def test_polls_answered_below_400_are_logged_at_debug_only(
    proxy: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ACCESS_LOGGER)
    for path in POLLS:
        assert (await proxy.get(path, headers={"User-Agent": "curl/8.5.0"})).status == 200
    assert (await proxy.get("/_proxy/health")).status == 200  # not the console's poll

    [info] = access_lines(caplog, logging.INFO)
    assert info.startswith("GET /_proxy/health 200")
    debug = access_lines(caplog, logging.DEBUG)
    assert [line.split(" ")[1] for line in debug] == [
        "/_proxy/status",
        "/_proxy/requests",
        "/_proxy/requests?after=0&limit=5",
    ]
    assert (await (await proxy.get("/_proxy/requests")).json())["requests"] == []


async def test_refused_polls_are_logged_at_info_and_kept_in_the_history(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await start_proxy(security={"api_keys": ["k-poll-1"]})
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    key = {"X-Proxy-Key": "k-poll-1"}
    assert (await proxy.get("/_proxy/status")).status == 401
    assert (await proxy.get("/_proxy/requests?after=x", headers=key)).status == 400
    for path in POLLS:
        assert (await proxy.get(path, headers=key)).status == 200

    info = access_lines(caplog, logging.INFO)
    assert [" ".join(line.split(" ")[:3]) for line in info] == [
        "GET /_proxy/status 401",
        "GET /_proxy/requests?after=x 400",
    ]
    resp = await proxy.get("/_proxy/requests", headers=key)
    kept = (await resp.json())["requests"]
    assert [(r["path"], r["status"]) for r in kept] == [
        ("/_proxy/status", 401),
        ("/_proxy/requests?after=x", 400),
    ]


async def test_the_installed_command_writes_no_access_line_for_polls(
    criteo_url: str, start_cli_server: StartCliServer, http: aiohttp.ClientSession
) -> None:
    """The server's own fast path for access lines (no LogRecord) obeys it too."""
    server = await start_cli_server("--upstream", criteo_url, "--port", "0", env=demo_env())
    for path in POLLS:
        async with http.get(server.url + path) as resp:
            assert resp.status == 200
    async with http.get(server.url + "/_proxy/health", headers={"X-Request-Id": "last-1"}) as resp:
        assert resp.status == 200
    await server.wait_for_output(lambda: "id=last-1" in server.stderr)
    assert "/_proxy/status" not in server.stderr
    assert "/_proxy/requests" not in server.stderr
    assert await server.stop() == 0


async def test_with_log_level_debug_the_polls_are_there(
    criteo_url: str, start_cli_server: StartCliServer, http: aiohttp.ClientSession
) -> None:
    server = await start_cli_server(
        "--upstream", criteo_url, "--port", "0", "--log-level", "debug", env=demo_env()
    )
    async with http.get(server.url + "/_proxy/status", headers={"X-Request-Id": "poll-1"}) as resp:
        assert resp.status == 200
    await server.wait_for_output(lambda: "id=poll-1" in server.stderr)
    [line] = [line for line in server.stderr_lines if "id=poll-1" in line]
    assert " DEBUG criteo_proxy.access: GET /_proxy/status 200 " in line
    assert await server.stop() == 0
