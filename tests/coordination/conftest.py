"""Proxies that share an app through a real redis-server (``tests/redis_server.py``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as redis_asyncio

from tests.conftest import CliServer, StartCliServer, demo_env

API = "/2026-07/advertisers/me"


async def get_status(http: aiohttp.ClientSession, url: str, path: str = API) -> int:
    """GET URL + PATH through a member; its status (the body read and dropped)."""
    async with http.get(url + path) as answer:
        await answer.read()
        return answer.status


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


async def start_fleet(
    start_cli_server: StartCliServer,
    config_file: Path,
    count: int,
    *,
    env: dict[str, str] | None = None,
) -> list[CliServer]:
    """COUNT proxies from the installed CLI, one config, each on a port of its own."""
    return list(
        await asyncio.gather(
            *(
                start_cli_server("--config", str(config_file), env=env or demo_env())
                for _ in range(count)
            )
        )
    )


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
