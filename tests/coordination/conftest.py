"""Proxies that share an app through a real redis-server (``tests/redis_server.py``)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis_asyncio

from tests.conftest import CliServer, StartCliServer, demo_env

API = "/2026-07/advertisers/me"


async def get_status(http: aiohttp.ClientSession, url: str, path: str = API) -> int:
    """GET URL + PATH through a member; its status (the body read and dropped)."""
    async with http.get(url + path) as answer:
        await answer.read()
        return answer.status


async def get_coordination(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The ``coordination`` object of the member at URL's one profile in /_proxy/status."""
    async with http.get(url + "/_proxy/status") as answer:
        (profile,) = (await answer.json())["profiles"]
    found: dict[str, Any] = profile["coordination"]
    return found


def write_fleet_config(
    path: Path,
    criteo_url: str,
    redis_url: str,
    key_prefix: str,
    **sections: Any,
) -> Path:
    """A config (JSON is YAML) for one member of the fleet, aimed at the fake."""
    config: dict[str, Any] = {
        "upstream": {"url": criteo_url},
        "listen": {"port": 0},
        "coordination": {"redis_url": redis_url, "key_prefix": key_prefix},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path.write_text(json.dumps(config))
    return path


def code_app_credentials(token_store: Path) -> dict[str, str]:
    """The credentials section of an authorization-code app keeping its store at TOKEN_STORE."""
    return {
        "grant_type": "authorization_code",
        "redirect_uri": "https://app.example/cb",
        "token_store": str(token_store),
    }


@dataclass
class Fleet:
    """A test's fleet: members' config files in the test's directory, aimed at the fake
    and under the test's key prefix, and the members started from the installed CLI."""

    directory: Path
    criteo_url: str
    key_prefix: str
    start_cli_server: StartCliServer

    def config(self, redis_url: str, name: str = "fleet", **sections: Any) -> Path:
        """NAME.yaml for members on REDIS_URL; SECTIONS as in write_fleet_config."""
        path = self.directory / f"{name}.yaml"
        return write_fleet_config(path, self.criteo_url, redis_url, self.key_prefix, **sections)

    async def start(self, config: Path) -> CliServer:
        """One member on CONFIG, with the fake's demo credentials."""
        return await self.start_cli_server("--config", str(config), env=demo_env())

    async def start_together(self, config: Path, count: int) -> list[CliServer]:
        """COUNT members on CONFIG, started at once, each on a port of its own."""
        return list(await asyncio.gather(*(self.start(config) for _ in range(count))))


@pytest.fixture
def fleet(
    tmp_path: Path, criteo_url: str, key_prefix: str, start_cli_server: StartCliServer
) -> Fleet:
    return Fleet(tmp_path, criteo_url, key_prefix, start_cli_server)


async def redis_contents(client: redis_asyncio.Redis, prefix: str) -> dict[str, object]:
    """Every key under PREFIX with its value (strings, hashes, sorted sets)."""
    found: dict[str, object] = {}
    async for raw in client.scan_iter(match=f"{prefix}:*"):
        key = raw.decode()
        kind = (await client.type(key)).decode()
        if kind == "string":
            found[key] = await client.get(key)
        elif kind == "hash":
            found[key] = await client.hgetall(key)
        elif kind == "zset":
            found[key] = await client.zrange(key, 0, -1, withscores=True)
        else:
            found[key] = kind
    return found
