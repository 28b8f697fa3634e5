"""Query values masked in the access line and the console (issue 20, item 10): a name is
read as a server would read it (percent-decoded) before it is matched, and the common
names of secrets in URLs (passwords, signatures) are matched too."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import FakeCriteo
from proxy.observability.access_log import redact_query
from tests.conftest import raw_request

ACCESS_LOGGER = "criteo_proxy.access"


@pytest.mark.parametrize(
    "name",
    [
        "%6Bey",
        "%6bey",
        "access%5Ftoken",
        "acc%65ss_token",
        "api%2Bkey",
        "client+secret",
        "%2570assword",  # encoded twice
        "passwd",
        "pwd",
        "password",
        "sig",
        "SIG",
        "apiSig",
        "x_sig",
        "sigV4",
        "signature",
        "X-Amz-Signature",
    ],
)
def test_a_secret_looking_name_is_masked_however_it_is_written(name: str) -> None:
    assert redact_query(f"/x?page=2&{name}=v4lue&b=1") == f"/x?page=2&{name}=***&b=1"


@pytest.mark.parametrize("name", ["design", "assignment", "signal", "page", "fields", "%70age"])
def test_an_ordinary_name_keeps_its_value(name: str) -> None:
    assert redact_query(f"/x?{name}=v") == f"/x?{name}=v"


async def test_percent_encoded_names_are_masked_in_the_access_line_and_the_console(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    values = {name: "v-" + secrets.token_hex(8) for name in ("%6Bey", "access%5Ftoken", "sig")}
    query = "&".join(f"{k}={v}" for k, v in values.items())
    target = f"/2026-07/echo/x?{query}&page=2"
    # Raw bytes: a client library would decode %6B to k before sending.
    sent = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    assert (await raw_request(proxy.port, sent)).status == 200
    assert criteo.last_request.raw_path == target
    masked = "/2026-07/echo/x?" + "&".join(f"{k}=***" for k in values) + "&page=2"
    [record] = (await (await proxy.get("/_proxy/requests")).json())["requests"]
    assert record["path"] == masked
    assert masked in caplog.text
    for value in values.values():
        assert value not in caplog.text
