"""Answers no honest Criteo gives (issue 20, items 6 and 12): whatever an upstream
header or error body holds, the client gets an answer, never a bare 500 nor a dropped
connection, and the proxy goes on serving."""

from __future__ import annotations

import email.utils
import gzip
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.config.schema import TransientRetryConfig
from proxy.fakes.criteo import FakeCriteo
from proxy.forwarding.retries import TransientPolicy, parse_retry_after, retry_delay
from tests.conftest import raw_request
from tests.forwarding.conftest import HostileUpstream, proxy_port, raw_answer

StartHostile = Callable[..., Awaitable[TestClient[Any, Any]]]

FLAKY = "/2026-07/echo/flaky"
NOW = 1_800_000_000.0

# --- Retry-After (item 6) ---------------------------------------------------------------

_UNREADABLE_RETRY_AFTER = [
    pytest.param("²", id="superscript-two"),
    pytest.param("٣", id="arabic-indic-three"),
    pytest.param("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", id="year-1e20"),
    pytest.param("Mon, 01 Jan 2027 99:99:99 GMT", id="hour-99"),
    pytest.param("1e5", id="exponent"),
    pytest.param("Fri, 31 Dec 9999 23:59:59 GMT" + " " * 200 + "x", id="date-and-junk"),
]
_ABSURDLY_FAR = [
    pytest.param("9" * 400, id="400-digits"),
    pytest.param("9" * 5000, id="5000-digits"),
    pytest.param("99999999999", id="3000-years"),
    pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", id="year-9999"),
]


@pytest.mark.parametrize("value", _UNREADABLE_RETRY_AFTER)
def test_an_unreadable_retry_after_is_ignored(value: str) -> None:
    assert parse_retry_after(value, now=NOW) is None
    policy = TransientPolicy.from_config(TransientRetryConfig())
    wait = retry_delay(
        policy,
        503,
        method="GET",
        body_replayable=True,
        retries_done=0,
        waited_seconds=0.0,
        retry_after=value,
        now=NOW,
        rand=lambda low, high: high,
    )
    assert wait == 0.25  # the usual first wait, as if there were no Retry-After


@pytest.mark.parametrize("value", _ABSURDLY_FAR)
def test_an_absurdly_far_retry_after_passes_the_answer_on(value: str) -> None:
    asked = parse_retry_after(value, now=NOW)
    assert asked is not None
    assert asked > 10**9
    policy = TransientPolicy.from_config(TransientRetryConfig())
    wait = retry_delay(
        policy,
        503,
        method="GET",
        body_replayable=True,
        retries_done=0,
        waited_seconds=0.0,
        retry_after=value,
        now=NOW,
    )
    assert wait is None  # longer than retry.transient.max_delay: passed on (DESIGN 10)


def test_a_sane_retry_after_still_reads_as_before() -> None:
    assert parse_retry_after(" 7 ", now=NOW) == 7.0
    in_four = email.utils.formatdate(NOW + 4, usegmt=True)
    assert parse_retry_after(in_four, now=NOW) == pytest.approx(4.0)


@pytest.mark.parametrize("value", [*_UNREADABLE_RETRY_AFTER, *_ABSURDLY_FAR])
async def test_a_hostile_retry_after_never_makes_a_500(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, value: str
) -> None:
    criteo.retry_after = value
    criteo.planned_failures[FLAKY] = [503]
    resp = await proxy.get(FLAKY)
    assert resp.status in (200, 503), await resp.text()
    assert "X-Criteo-Proxy-Error" not in resp.headers
    criteo.retry_after = None
    assert (await proxy.get(FLAKY)).status == 200


# --- headers the proxy could not write (item 12) -----------------------------------------

_UNWRITABLE_HEADERS = [
    pytest.param("Deprecation", "true\x01", id="deprecation-soh"),
    pytest.param("Sunset", "Thu, 31 Jul 2025 00:00:00 GMT\x7f", id="sunset-del"),
    pytest.param("Sunset", b"\xff\xfe", id="sunset-not-utf8"),
    pytest.param("X-Criteo-Note", "\x1b]0;owned\x07", id="osc-title"),
    pytest.param("Link", "<x>\x0b; rel=next", id="vertical-tab"),
]


@pytest.mark.parametrize(("name", "value"), _UNWRITABLE_HEADERS)
async def test_a_header_the_proxy_could_not_write_is_dropped_and_the_answer_goes_on(
    start_behind_hostile: StartHostile,
    hostile_upstream: HostileUpstream,
    name: str,
    value: str | bytes,
) -> None:
    hostile_upstream.answer = raw_answer(
        [(name, value), ("Content-Type", "application/json"), ("X-Kept", "yes")],
        b'{"data":[]}',
    )
    proxy = await start_behind_hostile()
    resp = await proxy.get("/2026-07/advertisers/me")
    assert resp.status == 200
    assert await resp.read() == b'{"data":[]}'
    assert name not in resp.headers
    assert resp.headers["X-Kept"] == "yes"
    assert "X-Request-Id" in resp.headers
    assert (await proxy.get("/_proxy/status")).status == 200


async def test_an_unwritable_header_is_dropped_from_a_streamed_answer_too(
    start_behind_hostile: StartHostile, hostile_upstream: HostileUpstream
) -> None:
    body = b"x" * (256 * 1024)  # past the size read whole: streamed
    hostile_upstream.answer = raw_answer([("Sunset", "\x01")], body)
    proxy = await start_behind_hostile()
    resp = await proxy.get("/2026-07/report")
    assert resp.status == 200
    assert await resp.read() == body
    assert "Sunset" not in resp.headers


async def test_an_unwritable_header_is_logged_once_by_name_never_by_value(
    start_behind_hostile: StartHostile,
    hostile_upstream: HostileUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hostile_upstream.answer = raw_answer([("Deprecation", "secret-ish\x01value")], b"{}")
    proxy = await start_behind_hostile()
    with caplog.at_level(logging.WARNING, logger="criteo_proxy"):
        for _ in range(3):
            assert (await proxy.get("/2026-07/advertisers/me")).status == 200
    [line] = [r.getMessage() for r in caplog.records if "Deprecation" in r.getMessage()]
    assert "secret-ish" not in line
    assert "dropped" in line


async def test_a_reason_phrase_the_proxy_could_not_write_becomes_the_standard_one(
    start_behind_hostile: StartHostile, hostile_upstream: HostileUpstream
) -> None:
    hostile_upstream.answer = raw_answer(
        [("Content-Type", "application/json")],
        b'{"errors":[]}',
        status_line=b"HTTP/1.1 403 Forbidden\x1b[2J",
    )
    proxy = await start_behind_hostile()
    request = b"GET /2026-07/advertisers/me HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer = await raw_request(proxy_port(proxy), request)
    assert answer.status == 403
    assert answer.body == b'{"errors":[]}'
    resp = await proxy.get("/2026-07/advertisers/me")
    assert resp.reason == "Forbidden"


# --- error bodies the proxy reads, read with bounds (item 12) -----------------------------

_DEEP_BODIES = [
    pytest.param(b"[" * 8000, id="8000-open-arrays"),
    pytest.param(b'{"errors":' + b"[" * 4000 + b"]" * 4000 + b"}", id="errors-4000-deep"),
    pytest.param(b'{"a":' * 1300 + b"1" + b"}" * 1300, id="objects-1300-deep"),
]


@pytest.mark.parametrize("body", _DEEP_BODIES)
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_a_deeply_nested_json_error_body_passes_on_unread(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, body: bytes, encoding: str
) -> None:
    sent = gzip.compress(body, mtime=0) if encoding == "gzip" else body

    async def deep(request: web.Request) -> web.Response:
        return web.Response(
            status=400,
            body=sent,
            content_type="application/json",
            headers={"Content-Encoding": encoding},
        )

    criteo.handlers["/2026-07/deep"] = deep
    resp = await proxy.get("/2026-07/deep", auto_decompress=False)
    assert resp.status == 400
    assert "X-Criteo-Proxy-Error" not in resp.headers
    assert await resp.read() == sent
    [record] = (await (await proxy.get("/_proxy/requests")).json())["requests"]
    assert record["status"] == 400
    assert record["criteo_trace_id"] is None
    assert (await proxy.get("/_proxy/status")).status == 200


async def test_a_trace_id_is_still_read_from_an_ordinary_envelope(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    body = b'{"errors":[{"traceId":"t-1","type":"validation","detail":{"a":[[1]]}}]}'

    async def ordinary(request: web.Request) -> web.Response:
        return web.Response(status=400, body=body, content_type="application/json")

    criteo.handlers["/2026-07/ordinary"] = ordinary
    assert (await proxy.get("/2026-07/ordinary")).status == 400
    [record] = (await (await proxy.get("/_proxy/requests")).json())["requests"]
    assert record["criteo_trace_id"] == "t-1"


@pytest.mark.parametrize(
    "sunset",
    [
        pytest.param("\x1b]0;owned\x07", id="osc"),
        pytest.param("x" * 4000, id="4000-chars"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
async def test_a_sunset_no_date_could_look_like_marks_the_version_without_a_date(
    start_behind_hostile: StartHostile, hostile_upstream: HostileUpstream, sunset: str | bytes
) -> None:
    hostile_upstream.answer = raw_answer([("Deprecation", "true"), ("Sunset", sunset)], b"{}")
    proxy = await start_behind_hostile()
    assert (await proxy.get("/2026-07/advertisers/me")).status == 200
    (profile,) = (await (await proxy.get("/_proxy/status")).json())["profiles"]
    [version] = profile["versions"]
    assert version["deprecated"] is True
    assert version["sunset"] is None
