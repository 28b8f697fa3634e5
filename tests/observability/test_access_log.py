"""The access log (DESIGN §5): one line per request with every field, in process and via the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import StartCliServer, StartProxy, demo_env, wait_for_line
from tests.observability.conftest import (
    ACCESS_LOGGER,
    API_PATH,
    access_fields,
    access_records,
    sample,
    scrape,
)

ACCESS_FIELDS = {
    "method",
    "path",
    "status",
    "bytes",
    "duration_ms",
    "upstream_ms",
    "retried",
    "retry_reason",
    "request_id",
}


def parse_json_line(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --- the access log, in process ---------------------------------------------------------


async def test_access_log_has_one_record_per_request_with_every_field(
    proxy: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    resp = await proxy.get("/2026-07/echo/x", headers={"X-Request-Id": "access-1"})
    body = await resp.read()

    assert resp.status == 200
    [record] = access_records(caplog)
    fields = access_fields(record)
    assert set(fields) == ACCESS_FIELDS
    assert fields["method"] == "GET"
    assert fields["path"] == "/2026-07/echo/x"
    assert fields["status"] == 200
    assert fields["bytes"] == len(body)
    assert fields["retried"] is False
    assert fields["retry_reason"] is None
    assert fields["request_id"] == "access-1"
    assert isinstance(fields["upstream_ms"], float)
    assert 0 <= fields["upstream_ms"] <= fields["duration_ms"]
    assert re.fullmatch(
        rf"GET /2026-07/echo/x 200 {len(body)}B [\d.]+ms upstream=[\d.]+ms retried=no id=access-1",
        record.getMessage(),
    ), record.getMessage()


async def test_access_log_says_retried_after_a_401_replay(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await proxy.get(API_PATH)).status == 200
    criteo.revoke_tokens()
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    resp = await proxy.get(API_PATH)

    assert resp.status == 200
    [record] = access_records(caplog)
    assert access_fields(record)["retried"] is True
    assert access_fields(record)["retry_reason"] == "401"
    # The reason, as DESIGN 10 has it for transient retries (retried=transient).
    assert "retried=401" in record.getMessage()


async def test_access_log_for_a_reserved_path_has_no_upstream_duration(
    proxy: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    resp = await proxy.get("/_proxy/health")

    assert resp.status == 200
    [record] = access_records(caplog)
    fields = access_fields(record)
    assert fields["path"] == "/_proxy/health"
    assert fields["upstream_ms"] is None
    assert fields["bytes"] == len(await resp.read())
    assert "upstream=-" in record.getMessage()


async def test_access_log_records_a_proxy_error_with_its_status_and_size(
    start_proxy: StartProxy, criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    criteo.clients = {"someone-else": "x"}
    proxy = await start_proxy()
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    resp = await proxy.get(API_PATH, headers={"X-Request-Id": "err-1"})

    assert resp.status == 502
    [record] = access_records(caplog)
    fields = access_fields(record)
    assert fields["status"] == 502
    assert fields["bytes"] == len(await resp.read())
    assert fields["request_id"] == "err-1"
    assert " 502 " in record.getMessage()


async def test_access_log_masks_query_values_whose_key_looks_secret(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    values = {
        "access_token": "tok-" + secrets.token_hex(8),
        "api_key": "key-" + secrets.token_hex(8),
        "code": "code-" + secrets.token_hex(8),
        "client_secret": "sec-" + secrets.token_hex(8),
        "password": "pw-" + secrets.token_hex(8),
    }
    query = "&".join(f"{k}={v}" for k, v in values.items())

    resp = await proxy.get(f"/2026-07/echo/x?{query}&page=2")

    assert resp.status == 200
    assert criteo.last_request.raw_path == f"/2026-07/echo/x?{query}&page=2"  # forwarded as is
    [record] = access_records(caplog)
    masked = "&".join(f"{k}=***" for k in values)
    assert access_fields(record)["path"] == f"/2026-07/echo/x?{masked}&page=2"
    assert f"/2026-07/echo/x?{masked}&page=2 200 " in record.getMessage()
    for value in values.values():
        assert value not in caplog.text


async def test_access_log_can_be_turned_off(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await start_proxy(logging={"access_log": False})
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    assert (await proxy.get(API_PATH)).status == 200
    assert (await proxy.get("/_proxy/health")).status == 200

    assert access_records(caplog) == []


# --- the access log through the real command --------------------------------------------


async def test_cli_json_access_line_is_one_json_object_with_every_field(
    criteo_url: str, start_cli_server: StartCliServer, http: aiohttp.ClientSession
) -> None:
    server = await start_cli_server(
        "--upstream", criteo_url, "--port", "0", "--log-format", "json", env=demo_env()
    )

    async with http.get(server.url + API_PATH, headers={"X-Request-Id": "cli-json-1"}) as resp:
        assert resp.status == 200
        body = await resp.read()

    def is_our_access_line(line: str) -> bool:
        entry = parse_json_line(line)
        return entry is not None and entry.get("request_id") == "cli-json-1"

    entry = parse_json_line(await wait_for_line(server.stderr_lines, is_our_access_line))
    assert entry is not None
    assert entry["logger"] == ACCESS_LOGGER
    assert entry["level"] == "info"
    assert set(entry) >= ACCESS_FIELDS
    assert entry["method"] == "GET"
    assert entry["path"] == API_PATH
    assert entry["status"] == 200
    assert entry["bytes"] == len(body)
    assert entry["retried"] is False
    assert isinstance(entry["upstream_ms"], float)
    assert isinstance(entry["duration_ms"], float)
    assert await server.stop() == 0


async def test_cli_text_access_line_has_method_path_status_and_request_id(
    criteo_url: str, start_cli_server: StartCliServer, http: aiohttp.ClientSession
) -> None:
    server = await start_cli_server("--upstream", criteo_url, "--port", "0", env=demo_env())

    async with http.get(server.url + API_PATH, headers={"X-Request-Id": "cli-text-1"}) as resp:
        assert resp.status == 200

    line = await wait_for_line(server.stderr_lines, lambda line: "id=cli-text-1" in line)
    assert ACCESS_LOGGER in line
    assert f"GET {API_PATH} 200 " in line
    assert "retried=no" in line
    assert await server.stop() == 0


# --- a transfer cut by the upstream -----------------------------------------------------


async def test_a_transfer_cut_by_the_upstream_is_logged_and_counted_as_a_502(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    from aiohttp import web

    async def dies(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1_000_000
        await response.prepare(request)
        await response.write(b"x" * 100_000)
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError

    criteo.handlers["/2026-07/dies"] = dies
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    resp = await proxy.get("/2026-07/dies")
    assert resp.status == 200  # the status line had gone before the upstream failed
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    async with asyncio.timeout(5):
        while not access_records(caplog):  # noqa: ASYNC110 - the line follows the handler
            await asyncio.sleep(0.01)
    (record,) = access_records(caplog)
    assert access_fields(record)["status"] == 502
    text = await scrape(proxy)
    assert sample(text, "criteo_proxy_requests_total", method="GET", status_class="5xx") == 1
