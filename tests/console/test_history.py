"""The console's request history, as /_proxy/requests serves it (DESIGN section 8).

The proxy serves in front of the fake Criteo over real sockets; the real-browser
tests are in tests/browser/.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.console.history import History, RequestRecord, build_record
from proxy.console.routes import MAX_ANSWER_BYTES
from proxy.exchange import Exchange
from proxy.fakes.criteo import FakeCriteo
from tests.conftest import StartProxy
from tests.console.conftest import status_of

RECORD_FIELDS = {
    "seq",
    "time",
    "profile",
    "method",
    "path",
    "status",
    "duration_ms",
    "upstream_ms",
    "retried",
    "rate_limit_wait_ms",
    "request_id",
    "criteo_trace_id",
    "proxy_error",
    "error_body",
    "who",
    "advice",
}


ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def requests_of(proxy: TestClient[Any, Any], query: str = "") -> list[dict[str, Any]]:
    resp = await proxy.get(f"/_proxy/requests{query}")
    assert resp.status == 200
    document = await resp.json()
    assert list(document) == ["requests"]
    records: list[dict[str, Any]] = document["requests"]
    return records


def criteo_error(status: int, trace_id: str, detail: str = "no such campaign") -> web.Response:
    return web.json_response(
        {
            "errors": [
                {"traceId": trace_id, "type": "validation", "code": "not-found", "detail": detail}
            ]
        },
        status=status,
    )


# --- /_proxy/requests -----------------------------------------------------------------------


async def test_a_forwarded_request_is_recorded_with_every_field(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    resp = await proxy.get("/2026-07/advertisers/me", headers={"X-Request-Id": "rec-1"})
    assert resp.status == 200

    [record] = await requests_of(proxy)
    assert set(record) == RECORD_FIELDS
    assert record["seq"] == 1
    assert ISO_UTC.fullmatch(record["time"])
    assert record["profile"] == "default"
    assert record["method"] == "GET"
    assert record["path"] == "/2026-07/advertisers/me"
    assert record["status"] == 200
    assert record["duration_ms"] >= record["upstream_ms"] > 0
    assert record["retried"] is None
    assert record["rate_limit_wait_ms"] == 0
    assert record["request_id"] == "rec-1"
    assert record["criteo_trace_id"] is None
    assert record["proxy_error"] is None
    assert record["error_body"] is None
    assert record["who"] is None
    assert record["advice"] is None


async def test_seq_grows_by_one_and_after_returns_only_newer_ones_oldest_first(
    proxy: TestClient[Any, Any],
) -> None:
    for i in range(5):
        assert (await proxy.get(f"/2026-07/echo/{i}")).status == 200
    records = await requests_of(proxy)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["path"] for r in records] == [f"/2026-07/echo/{i}" for i in range(5)]
    assert [r["seq"] for r in await requests_of(proxy, "?after=3")] == [4, 5]
    assert await requests_of(proxy, "?after=5") == []
    assert [r["seq"] for r in await requests_of(proxy, "?after=1&limit=2")] == [2, 3]


@pytest.mark.parametrize("query", ["?after=abc", "?after=-1", "?limit=1.5", "?after=" + "9" * 40])
async def test_a_bad_after_or_limit_is_a_400_in_the_envelope(
    proxy: TestClient[Any, Any], query: str
) -> None:
    resp = await proxy.get(f"/_proxy/requests{query}")
    assert resp.status == 400
    assert resp.headers["X-Criteo-Proxy-Error"] == "bad_request"
    (error,) = (await resp.json())["errors"]
    assert error["code"] == "bad_request"


@pytest.mark.parametrize(
    "query",
    [
        "?after=\u00b2",  # superscript two: str.isdigit() says yes, int() says no
        "?limit=\u00b2",
        "?after=\u0661",  # Arabic-Indic one: int() would take it for 1
        "?limit=\uff13",  # fullwidth three
        "?after=%C2%B2",
        "?after=+1",
        "?after=%201",
        "?limit=1_000",
        "?after=",
        "?limit=" + "0" * 19,
    ],
)
async def test_only_ascii_digits_of_bounded_length_are_a_number_anything_else_a_400(
    proxy: TestClient[Any, Any], query: str
) -> None:
    resp = await proxy.get(f"/_proxy/requests{query}")
    assert resp.status == 400, query
    assert resp.headers["X-Criteo-Proxy-Error"] == "bad_request"
    (error,) = (await resp.json())["errors"]
    assert error["code"] == "bad_request"
    assert (await proxy.get("/_proxy/status")).status == 200  # and the proxy serves on


async def test_a_401_retried_request_says_so(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    assert (await proxy.get("/2026-07/advertisers/me")).status == 200
    criteo.revoke_tokens()
    assert (await proxy.get("/2026-07/advertisers/me")).status == 200
    records = await requests_of(proxy)
    assert [r["retried"] for r in records] == [None, "401"]


async def test_a_paced_request_shows_its_wait(start_proxy: StartProxy, criteo: FakeCriteo) -> None:
    criteo.rate_limit, criteo.rate_window_seconds = 1, 1
    proxy = await start_proxy()
    first, second = await asyncio.gather(proxy.get("/2026-07/echo/a"), proxy.get("/2026-07/echo/b"))
    assert (first.status, second.status) == (200, 200)
    waits = sorted(r["rate_limit_wait_ms"] for r in await requests_of(proxy))
    assert waits[0] == 0
    assert waits[1] > 0  # the second waited for the first answer, then for the reset
    assert criteo.throttled == 0


async def test_a_429_replayed_after_the_reset_says_so(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    calls = 0

    async def spent_once(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls > 1:
            return web.json_response({"data": "ok"})
        throttled = criteo_error(429, "trace-429")
        throttled.headers.update(
            {
                "x-ratelimit-limit": "250",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": f"{time.time() + 0.2:.3f}",
            }
        )
        return throttled

    criteo.handlers["/2026-07/spent"] = spent_once
    resp = await proxy.get("/2026-07/spent")
    assert resp.status == 200
    assert calls == 2
    [record] = await requests_of(proxy)
    assert record["retried"] == "429"
    [api] = (await status_of(proxy))["profiles"][0]["rate_limits"]
    assert (api["seen_429"], api["retried_429"], api["refused"]) == (1, 1, 0)


async def test_a_criteo_error_keeps_its_trace_id_and_envelope(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    async def not_found(request: web.Request) -> web.Response:
        return criteo_error(404, "trace-404-abc")

    criteo.handlers["/2026-07/campaigns/1"] = not_found
    resp = await proxy.get("/2026-07/campaigns/1")
    assert resp.status == 404
    sent = await resp.read()

    [record] = await requests_of(proxy)
    assert record["criteo_trace_id"] == "trace-404-abc"
    assert record["error_body"] == sent.decode()
    assert json.loads(record["error_body"])["errors"][0]["code"] == "not-found"
    assert record["proxy_error"] is None


async def test_a_streamed_compressed_error_body_is_kept_readable(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    import gzip

    envelope = json.dumps({"errors": [{"traceId": "trace-gz", "code": "x"}]}).encode()

    async def gzipped(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=500,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(gzip.compress(envelope))
        await response.write_eof()
        return response

    criteo.handlers["/2026-07/gz"] = gzipped
    resp = await proxy.get("/2026-07/gz", headers={"Accept-Encoding": "gzip"})
    assert resp.status == 500
    [record] = await requests_of(proxy)
    assert record["criteo_trace_id"] == "trace-gz"
    assert record["error_body"] == envelope.decode()


async def test_error_bodies_are_not_kept_when_turned_off_nor_for_successes(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    async def bad(request: web.Request) -> web.Response:
        return criteo_error(400, "trace-400")

    criteo.handlers["/2026-07/bad"] = bad
    proxy = await start_proxy(console={"error_bodies": False})
    assert (await proxy.get("/2026-07/bad")).status == 400
    assert (await proxy.get("/2026-07/advertisers/me")).status == 200
    records = await requests_of(proxy)
    assert [r["error_body"] for r in records] == [None, None]
    assert records[0]["criteo_trace_id"] == "trace-400"  # the trace id is no body


async def test_secret_looking_query_values_are_masked_as_in_the_access_log(
    proxy: TestClient[Any, Any],
) -> None:
    await proxy.get("/2026-07/echo/x?access_token=abc123&api_key=k9&fields=name&code=c7")
    [record] = await requests_of(proxy)
    assert record["path"] == "/2026-07/echo/x?access_token=***&api_key=***&fields=name&code=***"


async def test_the_proxys_own_errors_are_recorded_with_their_code_and_envelope(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(security={"read_only": True})
    resp = await proxy.post("/2026-07/echo/x", data=b"{}")
    assert resp.status == 405
    [record] = await requests_of(proxy)
    assert record["proxy_error"] == "method_not_allowed"
    assert json.loads(record["error_body"])["errors"][0]["code"] == "method_not_allowed"
    assert criteo.requests == []


async def test_the_proxys_own_endpoints_are_not_recorded_unless_refused(
    proxy: TestClient[Any, Any],
) -> None:
    for path in ("/_proxy/health", "/_proxy/ready", "/_proxy/metrics", "/_proxy/status"):
        assert (await proxy.get(path)).status == 200
    assert (await proxy.get("/_proxy/nothing")).status == 404
    refused = await proxy.get("/_proxy/status", headers={"Origin": "https://evil.example"})
    assert refused.status == 403
    records = await requests_of(proxy)
    assert [(r["path"], r["proxy_error"]) for r in records] == [
        ("/_proxy/nothing", "not_found"),
        ("/_proxy/status", "origin_not_allowed"),
    ]


async def test_the_history_keeps_the_last_console_history_requests(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(console={"history": 3})
    for i in range(7):
        await proxy.get(f"/2026-07/echo/{i}")
    records = await requests_of(proxy)
    assert [r["seq"] for r in records] == [5, 6, 7]
    assert (await status_of(proxy))["console"]["last_seq"] == 7


def test_the_history_is_bounded_in_bytes_too() -> None:
    history = History(1000, max_bytes=20_000)
    exchange = Exchange("id", 0.0)
    exchange.error_body = b"x" * 8000
    for _ in range(10):
        history.append(
            build_record(
                history,
                profile="default",
                method="GET",
                raw_path="/2026-07/x",
                status=500,
                exchange=exchange,
                duration_seconds=0.001,
                keep_error_body=True,
                scrub=None,
            )
        )
    kept = history.after(0)
    assert 1 <= len(kept) <= 2
    assert sum(r.size_bytes for r in kept) <= 20_000
    assert kept[-1].seq == 10


def test_the_byte_bound_counts_utf8_bytes_not_characters() -> None:
    """Criteo's error body of 4-byte characters is 4 times its length in memory."""
    history = History(1000, max_bytes=20_000)
    exchange = Exchange("id", 0.0)
    exchange.error_body = ("\U0001f600" * 2000).encode()  # 8,000 bytes, 2,000 characters
    for _ in range(10):
        history.append(
            build_record(
                history,
                profile="default",
                method="GET",
                raw_path="/2026-07/\u00e9t\u00e9",
                status=500,
                exchange=exchange,
                duration_seconds=0.001,
                keep_error_body=True,
                scrub=None,
            )
        )
    kept = history.after(0)
    utf8 = sum(len(r.path.encode()) + len((r.error_body or "").encode()) for r in kept)
    assert utf8 <= 20_000
    assert len(kept) == 2
    assert sum(r.size_bytes for r in kept) <= 20_000


async def test_each_requests_answer_is_bounded_in_bytes_and_after_pages_through_all(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    """Control characters in an error body take 6 bytes each in JSON: an answer of every
    record could be many times the history's own bound; it stops before its own."""

    async def escapes(request: web.Request) -> web.Response:
        return web.Response(
            status=500, body=b"\x01" * 8000, headers={"Content-Type": "application/json"}
        )

    criteo.handlers["/2026-07/escapes"] = escapes
    sent = 60
    for _ in range(sent):
        assert (await proxy.get("/2026-07/escapes")).status == 500

    seen: list[int] = []
    answers = 0
    while True:
        resp = await proxy.get(f"/_proxy/requests?after={seen[-1] if seen else 0}")
        assert resp.status == 200
        body = await resp.read()
        assert len(body) <= MAX_ANSWER_BYTES
        page = json.loads(body)["requests"]
        if not page:
            break
        answers += 1
        assert all(len(r["error_body"]) == 8000 for r in page)
        seen += [r["seq"] for r in page]
    assert seen == list(range(1, sent + 1))
    assert answers > 1
    # limit still applies within the bound
    assert len(await requests_of(proxy, "?limit=2")) == 2


def test_an_error_body_never_keeps_the_access_token_in_use() -> None:
    history = History(10)
    exchange = Exchange("id", 0.0)
    exchange.error_body = b'{"errors":[{"detail":"token eyJhbGciOi.abc.def is revoked"}]}'
    record: RequestRecord = build_record(
        history,
        profile="default",
        method="GET",
        raw_path="/x",
        status=401,
        exchange=exchange,
        duration_seconds=0.0,
        keep_error_body=True,
        scrub="eyJhbGciOi.abc.def",
    )
    assert record.error_body == '{"errors":[{"detail":"token *** is revoked"}]}'


async def test_error_bodies_of_oauth2_paths_are_never_kept(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    # Forwarded: a client_credentials request is answered locally unless this is off.
    proxy = await start_proxy(tokens={"local_token_endpoint": False})
    resp = await proxy.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "wrong-1"},
    )
    assert resp.status == 401
    [record] = await requests_of(proxy)
    assert record["path"] == "/oauth2/token"
    assert record["error_body"] is None
