"""Operations (DESIGN §5, §3.6): access log, request ids, metrics, readiness, sunset, shutdown.

In-process tests run the proxy as a real server on loopback in front of the
fake Criteo; the shutdown and log-format tests drive the installed command as
a subprocess. Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from tests.conftest import CliServer, ManualClock, StartProxy, clean_env, raw_request

StartCliServer = Callable[..., Awaitable[CliServer]]

ACCESS_LOGGER = "criteo_proxy.access"
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
API_PATH = "/2025-10/advertisers/me"
DEPRECATED_PATH = "/2024-07/advertisers/me"
SUNSET_2024_07 = "Thu, 31 Jul 2025 00:00:00 GMT"  # the fake's default for 2024-07


def demo_env(**extra: str) -> dict[str, str]:
    return clean_env(
        CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET, **extra
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client, like curl, that gives up rather than hang a test."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


def access_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    assert isinstance(fields, dict), record
    return fields


async def wait_for_line(
    lines: list[str], predicate: Callable[[str], bool], timeout: float = 10
) -> str:
    """Wait for output (logs leave through a queue thread): poll the lines read so far."""
    async with asyncio.timeout(timeout):
        while True:
            for line in lines:
                if predicate(line):
                    return line
            await asyncio.sleep(0.02)


def parse_json_line(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --- metrics helpers ---------------------------------------------------------------------


async def scrape(proxy: TestClient[Any, Any]) -> str:
    resp = await proxy.get("/_proxy/metrics")
    assert resp.status == 200
    return await resp.text()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample NAME with exactly LABELS (0 when the series does not exist yet)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def all_label_names(text: str) -> set[str]:
    return {
        label
        for family in text_string_to_metric_families(text)
        for s in family.samples
        for label in s.labels
    }


# --- 1. the access log, in process ------------------------------------------------------


async def test_access_log_has_one_record_per_request_with_every_field(
    proxy: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    resp = await proxy.get("/2025-10/echo/x", headers={"X-Request-Id": "access-1"})
    body = await resp.read()

    assert resp.status == 200
    [record] = access_records(caplog)
    fields = access_fields(record)
    assert set(fields) == ACCESS_FIELDS
    assert fields["method"] == "GET"
    assert fields["path"] == "/2025-10/echo/x"
    assert fields["status"] == 200
    assert fields["bytes"] == len(body)
    assert fields["retried"] is False
    assert fields["retry_reason"] is None
    assert fields["request_id"] == "access-1"
    assert isinstance(fields["upstream_ms"], float)
    assert 0 <= fields["upstream_ms"] <= fields["duration_ms"]
    assert re.fullmatch(
        rf"GET /2025-10/echo/x 200 {len(body)}B [\d.]+ms upstream=[\d.]+ms retried=no id=access-1",
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

    resp = await proxy.get(f"/2025-10/echo/x?{query}&page=2")

    assert resp.status == 200
    assert criteo.last_request.raw_path == f"/2025-10/echo/x?{query}&page=2"  # forwarded as is
    [record] = access_records(caplog)
    masked = "&".join(f"{k}=***" for k in values)
    assert access_fields(record)["path"] == f"/2025-10/echo/x?{masked}&page=2"
    assert f"/2025-10/echo/x?{masked}&page=2 200 " in record.getMessage()
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


# --- 2. the access log through the real command -----------------------------------------


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


# --- 3. X-Request-Id ---------------------------------------------------------------------


async def test_sane_request_id_is_echoed_sent_upstream_and_logged(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    request_id = "req-" + "x" * 124  # 128 characters: the longest accepted

    resp = await proxy.get(API_PATH, headers={"X-Request-Id": request_id})

    assert resp.status == 200
    assert resp.headers["X-Request-Id"] == request_id
    assert criteo.last_request.headers["X-Request-Id"] == request_id
    [record] = access_records(caplog)
    assert access_fields(record)["request_id"] == request_id
    assert record.getMessage().endswith(f"id={request_id}")


async def test_request_id_is_the_trace_id_of_a_proxy_error(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    criteo.clients = {"someone-else": "x"}
    proxy = await start_proxy()

    resp = await proxy.get(API_PATH, headers={"X-Request-Id": "trace-me-7"})

    assert resp.status == 502
    assert resp.headers["X-Criteo-Proxy-Error"] == "token_request_failed"
    assert resp.headers["X-Request-Id"] == "trace-me-7"
    body = await resp.json()
    assert body["errors"][0]["traceId"] == "trace-me-7"


async def test_generated_request_id_is_the_same_everywhere(
    start_proxy: StartProxy, criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    criteo.clients = {"someone-else": "x"}
    proxy = await start_proxy()
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    resp = await proxy.get(API_PATH)

    generated = resp.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert (await resp.json())["errors"][0]["traceId"] == generated
    [record] = access_records(caplog)
    assert access_fields(record)["request_id"] == generated


@pytest.mark.parametrize(
    "offered",
    # Other control characters never get this far: aiohttp's parser answers 400 itself.
    [b"x" * 129, b"has space", b"tab\there", "caf\u00e9".encode()],
    ids=["too-long", "space", "tab", "non-ascii"],
)
async def test_insane_request_id_is_replaced_everywhere(
    proxy: TestClient[Any, Any],
    criteo: FakeCriteo,
    caplog: pytest.LogCaptureFixture,
    offered: bytes,
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    assert proxy.port is not None

    resp = await raw_request(
        proxy.port,
        b"GET " + API_PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"X-Request-Id: " + offered + b"\r\nConnection: close\r\n\r\n",
    )

    assert resp.status == 200
    generated = resp.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert criteo.last_request.headers["X-Request-Id"] == generated
    [record] = access_records(caplog)
    assert access_fields(record)["request_id"] == generated


# --- 4. metrics -------------------------------------------------------------------------


async def test_metrics_endpoint_serves_prometheus_text(proxy: TestClient[Any, Any]) -> None:
    resp = await proxy.get("/_proxy/metrics")

    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(await resp.text())}
    assert {
        "criteo_proxy_requests",
        "criteo_proxy_upstream_latency_seconds",
        "criteo_proxy_token_fetches",
        "criteo_proxy_401_retries",
        "criteo_proxy_in_flight_requests",
    } <= names


async def test_metrics_count_requests_by_method_and_status_class(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy()
    for _ in range(3):
        assert (await proxy.get(API_PATH)).status == 200
    assert (await proxy.get("/2025-10/nothing-here")).status == 404  # Criteo's 404
    assert (await proxy.post("/2025-10/echo/x", data=b"{}")).status == 200
    criteo.clients = {"someone-else": "x"}
    criteo.revoke_tokens()
    assert (await proxy.get(API_PATH)).status == 502  # the proxy's own error

    text = await scrape(proxy)

    total = "criteo_proxy_requests_total"
    assert sample(text, total, method="GET", status_class="2xx") == 3
    assert sample(text, total, method="GET", status_class="4xx") == 1
    assert sample(text, total, method="POST", status_class="2xx") == 1
    assert sample(text, total, method="GET", status_class="5xx") == 1


async def test_metrics_upstream_latency_histogram_counts_each_upstream_call(
    proxy: TestClient[Any, Any],
) -> None:
    for _ in range(3):
        assert (await proxy.get(API_PATH)).status == 200
    assert (await proxy.get("/_proxy/health")).status == 200  # never goes upstream

    text = await scrape(proxy)

    assert sample(text, "criteo_proxy_upstream_latency_seconds_count") == 3
    assert sample(text, "criteo_proxy_upstream_latency_seconds_sum") > 0
    assert sample(text, "criteo_proxy_upstream_latency_seconds_bucket", le="+Inf") == 3


async def test_metrics_count_token_fetches_by_result(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock
) -> None:
    criteo.clients = {"someone-else": "x"}
    proxy = await start_proxy(clock=clock)
    assert (await proxy.get(API_PATH)).status == 502
    text = await scrape(proxy)
    assert sample(text, "criteo_proxy_token_fetches_total", result="failure") >= 1
    assert sample(text, "criteo_proxy_token_fetches_total", result="success") == 0

    criteo.clients = {DEMO_CLIENT_ID: DEMO_CLIENT_SECRET}
    clock.advance(60)  # past the back-off
    assert (await proxy.get(API_PATH)).status == 200

    text = await scrape(proxy)
    assert sample(text, "criteo_proxy_token_fetches_total", result="success") == 1
    assert (
        sample(text, "criteo_proxy_token_fetches_total", result="failure")
        == len(criteo.token_requests) - 1
    )


async def test_metrics_count_401_retries(proxy: TestClient[Any, Any], criteo: FakeCriteo) -> None:
    assert (await proxy.get(API_PATH)).status == 200
    assert sample(await scrape(proxy), "criteo_proxy_401_retries_total") == 0
    criteo.revoke_tokens()

    assert (await proxy.get(API_PATH)).status == 200

    text = await scrape(proxy)
    assert sample(text, "criteo_proxy_401_retries_total") == 1
    assert sample(text, "criteo_proxy_token_fetches_total", result="success") == 2


async def test_metrics_in_flight_counts_a_request_held_upstream(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.json_response({"ok": True})

    criteo.handlers["/2025-10/held"] = held
    gauge = "criteo_proxy_in_flight_requests"
    # At rest the only request in flight is the scrape itself (0 if it is not counted).
    at_rest = sample(await scrape(proxy), gauge)
    assert at_rest in (0, 1)

    pending = asyncio.create_task(proxy.get("/2025-10/held"))
    try:
        await entered.wait()
        assert sample(await scrape(proxy), gauge) == at_rest + 1
    finally:
        release.set()
        resp = await pending
    assert resp.status == 200
    assert sample(await scrape(proxy), gauge) == at_rest


async def test_metrics_count_request_and_response_body_bytes(
    proxy: TestClient[Any, Any],
) -> None:
    before_resp = await proxy.get("/_proxy/metrics")
    before_bytes = await before_resp.read()
    before = before_bytes.decode()
    sent = secrets.token_bytes(12_345)

    resp = await proxy.post("/2025-10/echo/upload", data=sent)
    received = await resp.read()

    assert resp.status == 200
    assert json.loads(received)["bodyLength"] == len(sent)
    after = await scrape(proxy)
    in_total, out_total = "criteo_proxy_request_bytes_total", "criteo_proxy_response_bytes_total"
    assert sample(after, in_total) - sample(before, in_total) == len(sent)
    # The first scrape's own answer was counted after it was rendered.
    assert sample(after, out_total) - sample(before, out_total) == len(before_bytes) + len(received)


async def test_metrics_labels_stay_bounded_whatever_the_paths_and_methods(
    proxy: TestClient[Any, Any],
) -> None:
    for i in range(200):
        assert (await proxy.get(f"/2025-10/echo/path-{i}-unique")).status == 200
    assert (await proxy.request("PROPFIND", "/2025-10/echo/dav")).status == 200
    assert (await proxy.request("MKCOL", "/2025-10/echo/collection")).status == 200

    text = await scrape(proxy)

    assert all_label_names(text) <= {"method", "status_class", "result", "version", "le"}
    assert "path-" not in text
    assert "PROPFIND" not in text
    assert "MKCOL" not in text
    total = "criteo_proxy_requests_total"
    assert sample(text, total, method="GET", status_class="2xx") == 200
    assert sample(text, total, method="other", status_class="2xx") == 2
    methods = {
        s.labels["method"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == total
    }
    assert methods == {"GET", "other"}


async def test_metrics_never_show_the_secret_or_a_token(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    secret = "s3cr3t-" + secrets.token_hex(16)
    criteo.clients = {DEMO_CLIENT_ID: secret}
    proxy = await start_proxy(credentials={"client_secret": secret})
    assert (await proxy.get(API_PATH)).status == 200
    criteo.revoke_tokens()
    assert (await proxy.get(API_PATH)).status == 200

    text = await scrape(proxy)

    tokens = {r.token for r in criteo.requests if r.token}
    assert len(tokens) == 2
    for needle in {secret, *tokens}:
        assert needle not in text


# --- 5. readiness -----------------------------------------------------------------------


async def test_ready_reports_token_lifetime_and_no_error(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock
) -> None:
    proxy = await start_proxy(clock=clock)

    resp = await proxy.get("/_proxy/ready")

    assert resp.status == 200
    text = await resp.text()
    body = json.loads(text)
    assert body["status"] == "ready"
    assert 0 < body["token_expires_in_seconds"] <= 900
    assert body["last_error"] is None
    for needle in {DEMO_CLIENT_SECRET, *criteo.issued}:
        assert needle not in text


async def test_ready_is_503_with_code_reason_and_backoff_but_no_secret(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock
) -> None:
    secret = "s3cr3t-" + secrets.token_hex(16)
    criteo.clients = {DEMO_CLIENT_ID: "the-right-one"}
    proxy = await start_proxy(clock=clock, credentials={"client_secret": secret})

    resp = await proxy.get("/_proxy/ready")

    assert resp.status == 503
    text = await resp.text()
    body = json.loads(text)
    assert body["code"] == "token_request_failed"
    assert "invalid_client" in body["reason"]
    assert body["backoff_seconds"] > 0
    assert secret not in text
    assert criteo.issued == {}


# --- 6. version sunset (§3.6) ------------------------------------------------------------


def deprecation_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "deprecat" in r.getMessage().lower()
    ]


async def test_deprecated_version_is_logged_once_per_version_and_counted_each_time(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="criteo_proxy")
    for _ in range(3):
        resp = await proxy.get(DEPRECATED_PATH)
        assert resp.status == 200
        assert resp.headers["Sunset"] == SUNSET_2024_07  # passed to the client as well

    [warning] = deprecation_warnings(caplog)
    assert "2024-07" in warning
    assert SUNSET_2024_07 in warning

    sunset_2024_10 = "Sat, 31 Oct 2026 00:00:00 GMT"
    criteo.deprecated_versions["2024-10"] = sunset_2024_10
    for _ in range(2):
        assert (await proxy.get("/2024-10/advertisers/me")).status == 200

    first, second = deprecation_warnings(caplog)
    assert first == warning
    assert "2024-10" in second
    assert sunset_2024_10 in second
    text = await scrape(proxy)
    deprecated = "criteo_proxy_deprecated_responses_total"
    assert sample(text, deprecated, version="2024-07") == 3
    assert sample(text, deprecated, version="2024-10") == 2


async def test_current_version_logs_no_deprecation_and_counts_none(
    proxy: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="criteo_proxy")

    for _ in range(2):
        resp = await proxy.get(API_PATH)
        assert resp.status == 200
        assert "Sunset" not in resp.headers

    assert deprecation_warnings(caplog) == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "criteo_proxy_deprecated_responses_total{" not in await scrape(proxy)


async def test_retired_version_answer_410_passes_through(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await proxy.get("/2023-01/advertisers/me")

    assert resp.status == 410
    assert "X-Criteo-Proxy-Error" not in resp.headers
    body = await resp.json()
    assert body["errors"][0]["code"] == "version-decommissioned"
    assert criteo.last_request.raw_path == "/2023-01/advertisers/me"


# --- 7. Criteo's traceId -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "trace_key"),
    [(403, "traceId"), (500, "traceIdentifier")],
)
async def test_criteo_error_passes_byte_for_byte_and_its_trace_id_is_logged(
    proxy: TestClient[Any, Any],
    criteo: FakeCriteo,
    caplog: pytest.LogCaptureFixture,
    status: int,
    trace_key: str,
) -> None:
    # Odd spacing and key order: the body must not be re-serialised on the way.
    raw = (
        b'{ "errors" : [ {"' + trace_key.encode() + b'":"abc-trace", "type":"access-control",'
        b' "code":"forbidden", "title":"Missing consent"} ],"warnings":[] }'
    )

    async def criteo_error(request: web.Request) -> web.Response:
        return web.Response(status=status, body=raw, content_type="application/json")

    criteo.handlers["/2025-10/advertisers/42/campaigns"] = criteo_error
    caplog.set_level(logging.INFO, logger="criteo_proxy")

    resp = await proxy.get(
        "/2025-10/advertisers/42/campaigns", headers={"X-Request-Id": "our-id-9"}
    )

    assert resp.status == status
    assert "X-Criteo-Proxy-Error" not in resp.headers
    assert await resp.read() == raw
    assert [
        r
        for r in caplog.records
        if r.name != ACCESS_LOGGER and "our-id-9" in r.getMessage()
        if "abc-trace" in r.getMessage()
    ], caplog.text


# --- 8, 9. shutdown through the real command ---------------------------------------------

CHUNK_BYTES = 4096
CHUNK_COUNT = 20


def port_of(server: CliServer) -> int:
    port = URL(server.url).port
    assert port is not None
    return port


async def assert_not_served(port: int) -> None:
    """A new connection is refused, reset or closed without an answer."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return
    try:
        writer.write(b"GET /_proxy/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:
        return
    finally:
        writer.close()
    assert not answer.startswith(b"HTTP/1.1 200"), answer


async def wait_for_stopping(server: CliServer) -> None:
    """The first signal has been handled: the server logs that it is stopping."""
    await wait_for_line(server.stderr_lines, lambda line: "stopping" in line)


async def wait_for_exit(server: CliServer, timeout: float) -> int:
    """Wait for the process to end by itself (server.stop() would signal it again)."""
    code = await asyncio.wait_for(server.process.wait(), timeout)
    await asyncio.gather(*server._drains)
    return code


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "criteo-proxy.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def hold_forever(criteo: FakeCriteo, path: str, release: asyncio.Event) -> None:
    """Criteo sends the headers and one chunk, then nothing until RELEASE."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        await resp.write(b"x" * CHUNK_BYTES)
        await release.wait()
        await resp.write_eof()
        return resp

    criteo.handlers[path] = handler


async def test_sigterm_lets_an_in_flight_download_finish_then_exits_0(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    chunks = [secrets.token_bytes(CHUNK_BYTES) for _ in range(CHUNK_COUNT)]
    release = asyncio.Event()

    async def slow_download(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        await resp.write(chunks[0])
        await release.wait()
        for chunk in chunks[1:]:
            await asyncio.sleep(0.02)  # the fake's pacing, not a test waiting
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    criteo.handlers["/2025-10/reports/big"] = slow_download
    server = await start_cli_server("--upstream", criteo_url, "--port", "0", env=demo_env())

    try:
        async with http.get(server.url + "/2025-10/reports/big") as resp:
            assert resp.status == 200
            first = await resp.content.readexactly(CHUNK_BYTES)
            server.process.terminate()
            await wait_for_stopping(server)

            await assert_not_served(port_of(server))
            assert server.process.returncode is None  # still serving the download

            release.set()
            rest = await resp.read()
    finally:
        release.set()

    body = first + rest
    assert len(body) == CHUNK_BYTES * CHUNK_COUNT
    assert hashlib.sha256(body).digest() == hashlib.sha256(b"".join(chunks)).digest()
    assert await wait_for_exit(server, 15) == 0
    assert "Traceback" not in server.stderr


async def test_second_signal_exits_at_once_without_waiting_for_the_grace(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    release = asyncio.Event()
    hold_forever(criteo, "/2025-10/reports/stuck", release)
    config = write_config(tmp_path, "listen:\n  shutdown_grace: 30\n")
    server = await start_cli_server(
        "--config", config, "--upstream", criteo_url, "--port", "0", env=demo_env()
    )

    try:
        async with http.get(server.url + "/2025-10/reports/stuck") as resp:
            assert resp.status == 200
            await resp.content.readexactly(CHUNK_BYTES)
            server.process.terminate()
            await wait_for_stopping(server)
            assert server.process.returncode is None  # the first signal waits for the download

            started = time.monotonic()
            server.process.terminate()
            code = await wait_for_exit(server, 10)
            elapsed = time.monotonic() - started
    finally:
        release.set()

    assert elapsed < 10
    assert code == 1  # os._exit(1): an interrupted shutdown is not a clean one
    assert "second signal" in server.stderr


async def start_stuck_download_then_sigterm(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    grace_seconds: float,
) -> tuple[int, float, CliServer]:
    """Serve with GRACE_SECONDS, hold a download open, SIGTERM: (status, seconds, server)."""
    release = asyncio.Event()
    hold_forever(criteo, "/2025-10/reports/stuck", release)
    config = write_config(tmp_path, f"listen:\n  shutdown_grace: {grace_seconds}\n")
    server = await start_cli_server(
        "--config", config, "--upstream", criteo_url, "--port", "0", env=demo_env()
    )
    try:
        async with http.get(
            server.url + "/2025-10/reports/stuck", headers={"X-Request-Id": "stuck-1"}
        ) as resp:
            assert resp.status == 200
            await resp.content.readexactly(CHUNK_BYTES)
            started = time.monotonic()
            server.process.terminate()
            code = await wait_for_exit(server, 30)
            elapsed = time.monotonic() - started
    finally:
        release.set()
    return code, elapsed, server


async def test_sigterm_with_a_download_that_never_ends_does_not_hang_and_exits_0(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    code, elapsed, server = await start_stuck_download_then_sigterm(
        criteo, criteo_url, start_cli_server, http, tmp_path, grace_seconds=1
    )

    assert code == 0, server.stderr
    assert elapsed < 10
    assert "Traceback" not in server.stderr


async def test_sigterm_waits_for_the_grace_period_but_not_longer(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """listen.shutdown_grace bounds the whole stop: a stuck download gets it once, not twice."""
    grace_seconds = 3
    code, elapsed, server = await start_stuck_download_then_sigterm(
        criteo, criteo_url, start_cli_server, http, tmp_path, grace_seconds=grace_seconds
    )

    assert code == 0, server.stderr
    assert elapsed >= grace_seconds - 0.5  # the in-flight download was given its grace
    assert elapsed < grace_seconds + 1.5, f"exited {elapsed:.1f} s after SIGTERM"


async def test_a_download_cut_by_shutdown_still_gets_its_access_line(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """One access line per request (§5), the one the shutdown had to cut off included."""
    code, _elapsed, server = await start_stuck_download_then_sigterm(
        criteo, criteo_url, start_cli_server, http, tmp_path, grace_seconds=1
    )

    assert code == 0, server.stderr
    access_lines = [line for line in server.stderr_lines if ACCESS_LOGGER in line]
    assert any("id=stuck-1" in line for line in access_lines), server.stderr


async def test_deprecation_labels_stay_bounded_whatever_the_first_path_segment(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    """Only YYYY-MM, preview, legacy and experimental become version labels; others are 'other'."""
    for i in range(5):
        criteo.deprecated_versions[f"junk{i}"] = "Thu, 31 Jul 2025 00:00:00 GMT"
        assert (await proxy.get(f"/junk{i}/echo/x")).status == 200
    text = await scrape(proxy)
    deprecated = "criteo_proxy_deprecated_responses_total"
    assert sample(text, deprecated, version="other") == 5
    assert "junk" not in text


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

    criteo.handlers["/2025-10/dies"] = dies
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    resp = await proxy.get("/2025-10/dies")
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
