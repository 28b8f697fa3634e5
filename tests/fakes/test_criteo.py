"""The fake Criteo answers what the README's examples and Criteo's SDKs ask, under the
live API version, and Criteo's error envelope for anything else."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from proxy.fakes.criteo import LIVE_API_VERSION, FakeCriteo

V = LIVE_API_VERSION
REPORT = {
    "advertiserIds": "12345",
    "startDate": "2026-11-01",
    "endDate": "2026-11-07",
    "format": "csv",
    "dimensions": ["AdvertiserId", "Day"],
    "metrics": ["Displays", "Clicks"],
    "currency": "EUR",
    "timezone": "UTC",
}


@pytest.fixture
async def api(criteo: FakeCriteo, criteo_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the fake itself, carrying a token it issued."""
    headers = {"Authorization": f"Bearer {criteo.issue_token()}"}
    async with aiohttp.ClientSession(base_url=criteo_url + "/", headers=headers) as session:
        yield session


def test_the_live_version_is_a_criteo_version() -> None:
    year, month = LIVE_API_VERSION.split("-")
    assert len(year) == 4
    assert month in ("01", "04", "07", "10")


@pytest.mark.parametrize("path", ["advertisers/me", "marketing-solutions/me"])
async def test_the_readme_gets_answer_200(api: aiohttp.ClientSession, path: str) -> None:
    async with api.get(f"{V}/{path}") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["data"][0]["attributes"]["advertiserName"] == "Demo advertiser"


async def test_a_csv_report_has_a_row_per_day_with_the_columns_asked(
    api: aiohttp.ClientSession,
) -> None:
    async with api.post(f"{V}/statistics/report", json=REPORT) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/csv"
        rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert len(rows) == 7
    assert list(rows[0]) == ["AdvertiserId", "Day", "Displays", "Clicks"]
    assert rows[0]["AdvertiserId"] == "12345"
    assert [row["Day"] for row in rows][::6] == ["2026-11-01", "2026-11-07"]
    async with api.post(f"{V}/statistics/report", json=REPORT) as again:
        assert list(csv.DictReader(io.StringIO(await again.text()))) == rows  # repeatable


async def test_a_json_report_has_rows_and_a_total(api: aiohttp.ClientSession) -> None:
    asked = {**REPORT, "format": "Json", "advertiserIds": "1,2", "endDate": "2026-11-01"}
    async with api.post(f"{V}/statistics/report", json=asked) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        report = await resp.json()
    assert [row["AdvertiserId"] for row in report["Rows"]] == ["1", "2"]
    assert report["Total"]["Clicks"] == sum(int(row["Clicks"]) for row in report["Rows"])


@pytest.mark.parametrize(
    ("change", "title"),
    [
        ({"advertiserIds": ""}, "At least one advertiser id must be provided"),
        ({"format": "pdf"}, "the fake makes csv and json reports"),
        ({"startDate": "yesterday"}, "startDate and endDate must be dates"),
    ],
)
async def test_a_wrong_report_request_gets_criteos_400(
    api: aiohttp.ClientSession, change: dict[str, str], title: str
) -> None:
    async with api.post(f"{V}/statistics/report", json={**REPORT, **change}) as resp:
        assert resp.status == 400
        error = (await resp.json())["errors"][0]
    assert error["type"] == "validation"
    assert title in error["title"]
    async with api.post(f"{V}/statistics/report", data=b"{not json") as resp:
        assert resp.status == 400


async def test_retail_media_accounts_are_listed_as_the_sdk_reads_them(
    api: aiohttp.ClientSession,
) -> None:
    async with api.get(f"{V}/retail-media/accounts") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["metadata"]["currentPageIndex"] == 0
    assert body["data"][0]["attributes"]["name"] == "Demo retail account"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", f"{V}/campaigns/123"), ("POST", f"{V}/advertisers/me"), ("GET", "nothing")],
)
async def test_anything_else_is_criteos_404_envelope(
    api: aiohttp.ClientSession, method: str, path: str
) -> None:
    async with api.request(method, path) as resp:
        assert resp.status == 404
        body = json.loads(await resp.text())
    assert body["errors"][0]["code"] == "resource-not-found"
    assert body["errors"][0]["traceId"]


@pytest.mark.parametrize("version", ["2025-10", "2025-07", "2024-04"])
async def test_a_version_criteo_has_decommissioned_answers_410(
    api: aiohttp.ClientSession, version: str
) -> None:
    async with api.get(f"{version}/advertisers/me") as resp:
        assert resp.status == 410
        body = await resp.json()
    assert body["errors"][0]["code"] == "version-decommissioned"


async def test_the_version_in_its_deprecation_window_says_when_it_ends(
    api: aiohttp.ClientSession,
) -> None:
    async with api.get("2026-01/advertisers/me") as resp:
        assert resp.status == 200
        assert resp.headers["Deprecation"] == "true"
        assert resp.headers["Sunset"] == "Wed, 27 Jan 2027 00:00:00 GMT"
    async with api.get(f"{V}/advertisers/me") as resp:
        assert "Deprecation" not in resp.headers
