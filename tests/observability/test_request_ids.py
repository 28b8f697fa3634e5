"""X-Request-Id (DESIGN §5): a sane id is kept, an insane one replaced, the same id everywhere."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import StartProxy, raw_request
from tests.observability.conftest import ACCESS_LOGGER, API_PATH, access_fields, access_records


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
