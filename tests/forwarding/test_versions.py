"""Version sunset (DESIGN §3.6): Deprecation and Sunset are passed on, logged once, counted;
a deprecation said only in the envelope's warnings is too (issue 20, item 11)."""

from __future__ import annotations

import gzip
import json
import logging
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import FakeCriteo
from tests.observability.conftest import sample, scrape

API_PATH = "/2026-07/advertisers/me"
DEPRECATED_PATH = "/2026-01/advertisers/me"
SUNSET_2026_01 = "Wed, 27 Jan 2027 00:00:00 GMT"  # the fake's default for 2026-01


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
        assert resp.headers["Sunset"] == SUNSET_2026_01  # passed to the client as well

    [warning] = deprecation_warnings(caplog)
    assert "2026-01" in warning
    assert SUNSET_2026_01 in warning

    sunset_2026_07 = "Wed, 28 Jul 2027 00:00:00 GMT"  # later, 2026-07 dies too
    criteo.deprecated_versions["2026-07"] = sunset_2026_07
    for _ in range(2):
        assert (await proxy.get("/2026-07/advertisers/me")).status == 200

    first, second = deprecation_warnings(caplog)
    assert first == warning
    assert "2026-07" in second
    assert sunset_2026_07 in second
    text = await scrape(proxy)
    deprecated = "criteo_proxy_deprecated_responses_total"
    assert sample(text, deprecated, version="2026-01") == 3
    assert sample(text, deprecated, version="2026-07") == 2


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
    resp = await proxy.get("/2025-10/advertisers/me")

    assert resp.status == 410
    assert "X-Criteo-Proxy-Error" not in resp.headers
    body = await resp.json()
    assert body["errors"][0]["code"] == "version-decommissioned"
    assert criteo.last_request.raw_path == "/2025-10/advertisers/me"


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


# --- a dying version announced only in the body (issue 20, item 11) ---------------------


async def versions_in_status(proxy: TestClient[Any, Any]) -> dict[str, Any]:
    (profile,) = (await (await proxy.get("/_proxy/status")).json())["profiles"]
    return {v["version"]: v for v in profile["versions"]}


def envelope_with(*warnings: dict[str, str], data: bytes = b"[]") -> bytes:
    return (
        b'{"data":'
        + data
        + b',"errors":[],"warnings":'
        + json.dumps(list(warnings)).encode()
        + b"}"
    )


DEPRECATION_WARNING = {
    "traceId": "t-9",
    "type": "deprecation",
    "code": "version-deprecated",
    "title": "API version 2026-07 is deprecated",
    "detail": "Support for 2026-07 ends on 2027-07-28",
}


async def test_a_deprecation_warning_in_criteos_envelope_is_logged_counted_and_marked(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    criteo.deprecation_signal = "warnings"
    caplog.set_level(logging.INFO, logger="criteo_proxy")
    for _ in range(3):
        resp = await proxy.get(DEPRECATED_PATH)
        assert resp.status == 200
        assert "Deprecation" not in resp.headers
        assert "Sunset" not in resp.headers
        body = await resp.json()
        assert body["warnings"][0]["type"] == "deprecation"  # passed on untouched

    [warning] = deprecation_warnings(caplog)
    assert "2026-01" in warning
    assert "update the tools" in warning
    assert (
        sample(await scrape(proxy), "criteo_proxy_deprecated_responses_total", version="2026-01")
        == 3
    )
    marks = (await versions_in_status(proxy))["2026-01"]
    assert marks["deprecated"] is True
    assert marks["sunset"] is None


async def test_headers_and_a_warning_on_one_answer_count_it_once(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    criteo.deprecation_signal = "both"
    for _ in range(2):
        assert (await proxy.get(DEPRECATED_PATH)).status == 200
    text = await scrape(proxy)
    assert sample(text, "criteo_proxy_deprecated_responses_total", version="2026-01") == 2
    assert (await versions_in_status(proxy))["2026-01"]["sunset"] == SUNSET_2026_01


async def test_a_warning_at_the_end_of_a_large_streamed_answer_is_seen(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    rows = b",".join(b'{"id":"%d","name":"row %d"}' % (i, i) for i in range(20_000))
    body = envelope_with(DEPRECATION_WARNING, data=b"[" + rows + b"]")
    assert len(body) > 256 * 1024

    async def large(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 10_000):
            await response.write(body[start : start + 10_000])
        await response.write_eof()
        return response

    criteo.handlers["/2026-07/statistics/large"] = large
    caplog.set_level(logging.INFO, logger="criteo_proxy")
    resp = await proxy.get("/2026-07/statistics/large")
    assert resp.status == 200
    assert await resp.read() == body
    [warning] = deprecation_warnings(caplog)
    assert "2026-07" in warning
    assert (await versions_in_status(proxy))["2026-07"]["deprecated"] is True


async def test_a_warning_in_a_gzipped_answer_is_seen(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    body = gzip.compress(envelope_with(DEPRECATION_WARNING), mtime=0)

    async def compressed(request: web.Request) -> web.Response:
        return web.Response(
            body=body, content_type="application/json", headers={"Content-Encoding": "gzip"}
        )

    criteo.handlers["/2026-07/compressed"] = compressed
    resp = await proxy.get("/2026-07/compressed", auto_decompress=False)
    assert await resp.read() == body
    assert (await versions_in_status(proxy))["2026-07"]["deprecated"] is True


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param(
            "application/json",
            envelope_with({"type": "validation", "title": "deprecation is not the type"}),
            id="another-type",
        ),
        pytest.param("text/csv", b'id\n"warnings":[{"type":"deprecation"}]\n', id="not-json"),
        pytest.param(
            "application/json",
            b'{"data":[],"warnings":' + b"[" * 5000 + b'{"type":"deprecation"}',
            id="nested-5000-deep",
        ),
        pytest.param(
            "application/json",
            b'{"data":"\\"warnings\\":[{\\"type\\":\\"deprecation\\"}]","warnings":[]}',
            id="inside-a-string",
        ),
        pytest.param("application/json", b'{"warnings":[{"type":"deprecation"', id="cut-off"),
    ],
)
async def test_no_deprecation_is_read_where_there_is_none(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, content_type: str, body: bytes
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    criteo.handlers["/2026-07/other"] = answer
    resp = await proxy.get("/2026-07/other")
    assert resp.status == 200
    assert await resp.read() == body
    assert (await versions_in_status(proxy))["2026-07"]["deprecated"] is False
    assert "criteo_proxy_deprecated_responses_total{" not in await scrape(proxy)
