"""Shared by the tests of the installed ``criteo-proxy`` command: demo credentials, a plain client.

Everything listens on and talks to 127.0.0.1 only. The fake runs in the test's
event loop, so the command is always run with the async helpers of conftest.
"""

from __future__ import annotations

import secrets

API_PATH = "/2026-07/advertisers/me"
DEMO_ADVERTISER = {
    "data": [
        {"id": "12345", "type": "advertiser", "attributes": {"advertiserName": "Demo advertiser"}}
    ],
    "errors": [],
    "warnings": [],
}


def make_secret() -> str:
    return "s3cr3t-" + secrets.token_hex(16)
