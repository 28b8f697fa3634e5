"""The reserved /_proxy paths and the request id, through a real proxy server."""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from tests.conftest import ManualClock, StartProxy


async def test_health_answers_ok_without_touching_the_token_endpoint(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    criteo.token_failure_status = 503
    proxy = await start_proxy()
    resp = await proxy.get("/_proxy/health")
    assert resp.status == 200
    assert await resp.read() == b'{"status":"ok"}'
    before = len(criteo.token_requests)
    await proxy.get("/_proxy/health")
    assert len(criteo.token_requests) == before  # health itself never fetches


async def test_ready_is_200_with_a_token(proxy: TestClient[Any, Any]) -> None:
    resp = await proxy.get("/_proxy/ready")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ready"
    assert 0 < body["token_expires_in_seconds"] <= 900


async def test_ready_is_503_with_the_reason_when_no_token_can_be_had(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    criteo.clients = {"someone-else": "x"}
    proxy = await start_proxy()
    resp = await proxy.get("/_proxy/ready")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "not_ready"
    assert body["code"] == "token_request_failed"
    assert "invalid_client" in body["reason"]


async def test_unknown_reserved_path_is_a_proxy_404_never_forwarded(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await proxy.get("/_proxy/nothing-here")
    assert resp.status == 404
    assert resp.headers["X-Criteo-Proxy-Error"] == "not_found"
    assert criteo.requests == []


async def test_request_id_from_the_client_is_sent_upstream_and_echoed(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await proxy.get("/2026-07/advertisers/me", headers={"X-Request-Id": "abc-123"})
    assert resp.status == 200
    assert resp.headers["X-Request-Id"] == "abc-123"
    assert criteo.last_request.headers["X-Request-Id"] == "abc-123"


async def test_insane_request_id_is_replaced_by_a_generated_one(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await proxy.get("/2026-07/advertisers/me", headers={"X-Request-Id": "x" * 200})
    generated = resp.headers["X-Request-Id"]
    assert generated != "x" * 200
    assert len(generated) == 32
    assert criteo.last_request.headers["X-Request-Id"] == generated


async def test_reserved_get_routes_answer_head_too_and_are_never_forwarded(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    """HEAD is GET without the body (RFC 9110 9.3.2): a monitor's HEAD /_proxy/health."""
    for path in ("/_proxy/health", "/_proxy/ready", "/_proxy/metrics", "/_proxy/status"):
        resp = await proxy.head(path)
        assert resp.status == 200, path
        assert "X-Request-Id" in resp.headers
        assert await resp.read() == b""
    assert criteo.requests == []
    posted = await proxy.post("/_proxy/health")
    assert posted.status == 404  # only GET and HEAD are routes; the rest is reserved
    assert posted.headers["X-Criteo-Proxy-Error"] == "not_found"


# --- readiness --------------------------------------------------------------------------


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
