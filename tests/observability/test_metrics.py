"""Metrics (DESIGN §5): what /_proxy/metrics counts, with bounded labels and no secret."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from tests.conftest import ManualClock, StartProxy
from tests.observability.conftest import API_PATH, sample, scrape


def all_label_names(text: str) -> set[str]:
    return {
        label
        for family in text_string_to_metric_families(text)
        for s in family.samples
        for label in s.labels
    }


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
    assert (await proxy.get("/2026-07/nothing-here")).status == 404  # Criteo's 404
    assert (await proxy.post("/2026-07/echo/x", data=b"{}")).status == 200
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

    criteo.handlers["/2026-07/held"] = held
    gauge = "criteo_proxy_in_flight_requests"
    # At rest the only request in flight is the scrape itself (0 if it is not counted).
    at_rest = sample(await scrape(proxy), gauge)
    assert at_rest in (0, 1)

    pending = asyncio.create_task(proxy.get("/2026-07/held"))
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

    resp = await proxy.post("/2026-07/echo/upload", data=sent)
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
        assert (await proxy.get(f"/2026-07/echo/path-{i}-unique")).status == 200
    assert (await proxy.request("PROPFIND", "/2026-07/echo/dav")).status == 200
    assert (await proxy.request("MKCOL", "/2026-07/echo/collection")).status == 200

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
