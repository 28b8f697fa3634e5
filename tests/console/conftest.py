"""Shared by the console tests: the /_proxy/status document, as the running proxy serves it."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient


async def status_of(proxy: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await proxy.get("/_proxy/status")
    assert resp.status == 200
    document: dict[str, Any] = await resp.json()
    return document
