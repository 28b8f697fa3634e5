"""Version sunset (DESIGN §3.6): Deprecation and Sunset are passed on, logged once, counted."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from proxy.fakes.criteo import FakeCriteo

API_PATH = "/2025-10/advertisers/me"
DEPRECATED_PATH = "/2024-07/advertisers/me"
SUNSET_2024_07 = "Thu, 31 Jul 2025 00:00:00 GMT"  # the fake's default for 2024-07


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
