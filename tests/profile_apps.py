"""The apps of the profile tests (DESIGN section 9), for tests/config/ and tests/server/:
the fake Criteo knowing three apps, their environment, and the config files naming them.

A plain helper module; each test module keeps a tiny ``criteo`` fixture that calls
``three_app_criteo`` (the fake the serving fixtures of tests/conftest.py build on).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from tests.conftest import clean_env

RETAIL_ID, RETAIL_SECRET = "retail-app", "retail-s3cret-41"
ADS_ID, ADS_SECRET = "ads-app", "ads-s3cret-77"
REDIRECT_URI = "https://app.example/cb"


def three_app_criteo(clock: Callable[[], float]) -> FakeCriteo:
    """The fake knows three apps: the demo app, retail and ads."""
    return FakeCriteo(
        clock=clock,
        clients={
            DEMO_CLIENT_ID: DEMO_CLIENT_SECRET,
            RETAIL_ID: RETAIL_SECRET,
            ADS_ID: ADS_SECRET,
        },
    )


def env(**extra: str) -> dict[str, str]:
    values = {
        "CRITEO_CLIENT_ID": DEMO_CLIENT_ID,
        "CRITEO_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "RETAIL_CLIENT_ID": RETAIL_ID,
        "RETAIL_CLIENT_SECRET": RETAIL_SECRET,
    }
    return clean_env(**{**values, **extra})


def write_config(path: Path, criteo_url: str, profiles: dict[str, Any], **top: Any) -> Path:
    """A config file (JSON is YAML) aimed at the fake, with PROFILES."""
    document = {"upstream": {"url": criteo_url}, **top, "profiles": profiles}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def retail(port: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "listen": {"port": port},
        "credentials": {
            "client_id": "${RETAIL_CLIENT_ID}",
            "client_secret": "${RETAIL_CLIENT_SECRET}",
        },
        **extra,
    }


def ads(store: Path, port: int = 0) -> dict[str, Any]:
    return {
        "listen": {"port": port},
        "credentials": {
            "grant_type": "authorization_code",
            "client_id": ADS_ID,
            "client_secret": ADS_SECRET,
            "redirect_uri": REDIRECT_URI,
            "token_store": str(store),
        },
    }
