"""DESIGN 11, the access token: one token request for a cold fleet, the in-memory cache
in front of Redis, and the 401 rule for the fleet. Three proxies from the installed
CLI, a real redis-server and the fake Criteo."""

from __future__ import annotations

import asyncio

import aiohttp
import redis.asyncio as redis_asyncio

from proxy.fakes.criteo import FakeCriteo
from tests.coordination.conftest import Fleet, get_status
from tests.redis_server import RedisServer


async def _get_all(http: aiohttp.ClientSession, urls: list[str], times: int) -> list[int]:
    return list(
        await asyncio.gather(*(get_status(http, url) for url in urls for _ in range(times)))
    )


def _token_requests(criteo: FakeCriteo) -> int:
    return sum(1 for r in criteo.token_requests if r.form.get("grant_type"))


async def test_a_cold_fleet_makes_one_token_request(
    fleet: Fleet, criteo: FakeCriteo, shared_redis: RedisServer, http: aiohttp.ClientSession
) -> None:
    members = await fleet.start_together(fleet.config(shared_redis.url), 3)
    statuses = await _get_all(http, [member.url for member in members], 10)
    assert statuses == [200] * 30, members[0].stderr
    assert _token_requests(criteo) == 1
    tokens = {r.token for r in criteo.requests}
    assert len(tokens) == 1  # every member used the one token
    for member in members:
        assert await member.stop() == 0


async def test_a_warm_member_asks_redis_nothing_for_its_token(
    fleet: Fleet, shared_redis: RedisServer, key_prefix: str, http: aiohttp.ClientSession
) -> None:
    member = await fleet.start(fleet.config(shared_redis.url))
    assert await _get_all(http, [member.url], 1) == [200]  # warm
    seen: list[str] = []
    monitor_client = redis_asyncio.Redis.from_url(shared_redis.url)
    async with monitor_client.monitor() as monitor:
        listening = asyncio.Event()

        async def watch() -> None:
            listening.set()
            async for command in monitor.listen():
                seen.append(str(command.get("command", "")))

        watcher = asyncio.create_task(watch())
        await listening.wait()
        assert await _get_all(http, [member.url], 20) == [200] * 20
        await monitor_client.ping()  # a marker: everything before it has been seen
        async with asyncio.timeout(5):
            while not any("PING" in c for c in seen):  # noqa: ASYNC110 - MONITOR's own feed
                await asyncio.sleep(0.01)
        watcher.cancel()
    await monitor_client.aclose()
    about_tokens = [c for c in seen if f"{key_prefix}:" in c and "access-token" in c]
    assert about_tokens == []
    assert await member.stop() == 0


async def test_a_401_drops_the_fleets_token_once_and_the_others_take_the_new_one(
    fleet: Fleet, criteo: FakeCriteo, shared_redis: RedisServer, http: aiohttp.ClientSession
) -> None:
    first, second = await fleet.start_together(fleet.config(shared_redis.url), 2)
    assert await _get_all(http, [first.url, second.url], 1) == [200, 200]
    assert _token_requests(criteo) == 1
    criteo.revoke_tokens()  # the shared token now meets a 401 everywhere
    assert await _get_all(http, [first.url], 1) == [200]  # drops it, fetches, shares
    assert await _get_all(http, [second.url], 1) == [200]  # its 401 meets a token replaced
    assert _token_requests(criteo) == 2
    for member in (first, second):
        assert await member.stop() == 0
