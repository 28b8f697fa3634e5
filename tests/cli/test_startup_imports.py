"""The short commands import only what they use: a cached ``criteo-proxy token``,
``--help`` and ``status`` start at about the speed of Python itself.

A shell loop of ``$(criteo-proxy token)`` pays the start-up on every call; aiohttp and
asyncio (most of it) are never used by a cache hit. Checked by what the command
imports (``python -X importtime``), not by a timing; ``tests/bench/startup.py``
measures the time.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import CliResult, demo_env, run_cli

# Neither the event loop nor the HTTP stack: what a cache hit, --help or status never need.
HEAVY = ("aiohttp", "asyncio", "yarl", "multidict", "uvloop", "yaml", "cachetools")
SERVER_SIDE = ("proxy.server", "proxy.forwarding", "proxy.console", "proxy.tokens.provider")


async def imported_by(*args: str, env: dict[str, str]) -> tuple[CliResult, set[str]]:
    """Run ``python -X importtime -m proxy ARGS``; its result and every module it imported
    that a bare ``python -c pass`` does not (under coverage, coverage's own imports)."""
    result, modules = await _imports("-m", "proxy", *args, env=env)
    _, bare = await _imports("-c", "pass", env=env)
    return result, modules - bare


async def _imports(*args: str, env: dict[str, str]) -> tuple[CliResult, set[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "importtime",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    modules = set()
    other = []
    for line in stderr.decode().splitlines():
        if line.startswith("import time:"):
            modules.add(line.rsplit("|", 1)[1].strip())
        else:
            other.append(line)
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), "\n".join(other)), modules


def heavy_in(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(
        m for m in modules if m in prefixes or m.startswith(tuple(p + "." for p in prefixes))
    )


async def test_a_cached_token_imports_no_aiohttp_asyncio_or_yaml(
    criteo: FakeCriteo, criteo_url: str
) -> None:
    first = await run_cli("token", "--upstream", criteo_url, env=demo_env())
    assert first.returncode == 0, first.stderr
    result, modules = await imported_by("token", "--upstream", criteo_url, env=demo_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout == first.stdout  # a cache hit
    assert len(criteo.token_requests) == 1
    assert heavy_in(modules, HEAVY) == []
    assert heavy_in(modules, SERVER_SIDE) == []
    # answered before the config is loaded (proxy/cli/cached_token.py)
    assert heavy_in(modules, ("dataclasses", "proxy.config.schema", "logging")) == []
    # and before the grammar, with a fingerprint that needs no OpenSSL
    assert heavy_in(modules, ("argparse", "hashlib", "_hashlib", "hmac")) == []


async def test_help_imports_no_aiohttp_asyncio_or_yaml() -> None:
    result, modules = await imported_by("--help", env=demo_env())
    assert result.returncode == 0, result.stderr
    assert "usage: criteo-proxy" in result.stdout
    assert heavy_in(modules, HEAVY) == []
    assert heavy_in(modules, SERVER_SIDE) == []


async def test_status_imports_neither_the_server_side_nor_aiohttp(
    proxy: TestClient[Any, Any],
) -> None:
    url = str(proxy.make_url("")).rstrip("/")
    result, modules = await imported_by("status", "--url", url, env=demo_env())
    assert result.returncode == 0, result.stderr
    assert f"profile default on {url}" in result.stdout
    assert heavy_in(modules, HEAVY) == []
    assert heavy_in(modules, SERVER_SIDE) == []
