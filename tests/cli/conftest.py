"""Shared by the tests of the installed ``criteo-proxy`` command: demo credentials, a plain client.

Everything listens on and talks to 127.0.0.1 only. The fake runs in the test's
event loop, so the command is always run with the async helpers of conftest.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from tests.conftest import CliServer, clean_env

StartCliServer = Callable[..., Awaitable[CliServer]]

API_PATH = "/2025-10/advertisers/me"
DEMO_ADVERTISER = {
    "data": [
        {"id": "12345", "type": "Advertiser", "attributes": {"advertiserName": "Demo advertiser"}}
    ],
    "errors": [],
    "warnings": [],
}


def demo_env(**extra: str) -> dict[str, str]:
    return clean_env(
        CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET, **extra
    )


def make_secret() -> str:
    return "s3cr3t-" + secrets.token_hex(16)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client, like curl: no proxies from the environment."""
    async with aiohttp.ClientSession() as session:
        yield session
