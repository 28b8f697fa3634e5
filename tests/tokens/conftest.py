"""Shared by the authorization-code tests: the demo app's environment, the store, its config.

The command runs as a subprocess against the fake Criteo, which serves in the test's
event loop (async helpers only). Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from proxy.fakes.criteo import DEMO_CLIENT_ID
from proxy.tokens.store import TokenStore
from tests import conftest
from tests.conftest import CliResult

REDIRECT_URI = "https://app.example/cb"
AUTHORIZE_AGAIN = "criteo-proxy authorize"


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """The token store, in a directory that does not exist yet."""
    return tmp_path / "store" / "tokens.json"


def write_code_app_config(path: Path, criteo_url: str, store_path: Path, **listen: Any) -> Path:
    """A config file for an authorization-code app aimed at the fake (JSON is YAML), on
    port 0; LISTEN adds to its listen section."""
    path.write_text(
        json.dumps(
            {
                "upstream": {"url": criteo_url},
                "credentials": {
                    "grant_type": "authorization_code",
                    "redirect_uri": REDIRECT_URI,
                    "token_store": str(store_path),
                },
                "listen": {"port": 0, **listen},
            }
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config_file(tmp_path: Path, criteo_url: str, store_path: Path) -> Path:
    """A config file for an authorization-code app aimed at the fake (JSON is YAML)."""
    return write_code_app_config(tmp_path / "criteo-proxy.yaml", criteo_url, store_path)


async def run_to_exit(*args: str, env: dict[str, str], timeout: float = 20) -> CliResult:
    """Like run_cli, for a command that must exit by itself: killed (and failed) if it does not."""
    process = await asyncio.create_subprocess_exec(
        *conftest.cli_command(),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"criteo-proxy {' '.join(args)} did not exit") from None
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


def stored_token(path: Path) -> str:
    stored = TokenStore(str(path)).load()
    assert stored.client_id == DEMO_CLIENT_ID
    return stored.refresh_token
