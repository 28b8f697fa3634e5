"""Helpers of the server tests: the proxy's own error envelope."""

from __future__ import annotations

from typing import Any


def assert_proxy_error(body: dict[str, Any], code: str) -> None:
    (error,) = body["errors"]
    assert error["type"] == "proxy"
    assert error["code"] == code
