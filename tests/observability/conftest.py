"""Helpers of the observability tests: the access records a test captured, metrics scrapes."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

ACCESS_LOGGER = "criteo_proxy.access"
API_PATH = "/2026-07/advertisers/me"


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


def access_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    assert isinstance(fields, dict), record
    return fields


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
