"""Criteo's traceId: Criteo's error passes byte for byte, its traceId logged with our request id."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import FakeCriteo

ACCESS_LOGGER = "criteo_proxy.access"


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

    criteo.handlers["/2026-07/advertisers/42/campaigns"] = criteo_error
    caplog.set_level(logging.INFO, logger="criteo_proxy")

    resp = await proxy.get(
        "/2026-07/advertisers/42/campaigns", headers={"X-Request-Id": "our-id-9"}
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
