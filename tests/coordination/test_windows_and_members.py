"""DESIGN 11, the rate-limit windows and the members: the fleet never sends more in a
window than Criteo's answers allow, and each member counts those heard from lately."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import redis.asyncio as redis_asyncio

from proxy.coordination.keys import AppKeys
from proxy.coordination.link import Link
from proxy.coordination.members import HEARD_WITHIN_SECONDS, RECOUNT_EVERY_SECONDS, Members
from proxy.coordination.windows import FleetWindows
from proxy.fakes.criteo import FakeCriteo
from tests.conftest import demo_env, run_cli
from tests.coordination.conftest import Fleet, get_coordination
from tests.redis_server import RedisServer

API = "/2026-07/advertisers/me"


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str | None]:
    async with http.get(url + API) as answer:
        await answer.read()
        return answer.status, answer.headers.get("X-Criteo-Proxy-Error")


async def test_three_members_bursting_on_one_window_meet_no_429_from_criteo(
    fleet: Fleet, criteo: FakeCriteo, shared_redis: RedisServer, http: aiohttp.ClientSession
) -> None:
    criteo.rate_limit, criteo.rate_window_seconds = 6, 1
    members = await fleet.start_together(fleet.config(shared_redis.url), 3)
    answers = await asyncio.gather(*(_get(http, m.url) for m in members for _ in range(8)))
    assert answers == [(200, None)] * 24
    assert criteo.throttled == 0  # Criteo never had to refuse a call
    used = sorted(criteo.rate_counts.values())
    assert sum(used) == 24
    assert max(used) <= 6
    async with http.get(members[0].url + "/_proxy/status") as answer:
        (profile,) = (await answer.json())["profiles"]
    (api,) = [w for w in profile["rate_limits"] if w["bucket"] == "api"]
    assert api["limit"] == 6  # the fleet's window, as this member last saw it
    for member in members:
        assert await member.stop() == 0


async def test_status_counts_the_members_and_says_where_redis_is(
    fleet: Fleet, shared_redis: RedisServer, http: aiohttp.ClientSession
) -> None:
    members = await fleet.start_together(fleet.config(shared_redis.url), 3)
    # Each announced itself on joining; the last to join has heard the two others.
    counts = []
    for member in members:
        coordination = await get_coordination(http, member.url)
        assert coordination["state"] == "up"
        assert coordination["redis"] == f"redis://127.0.0.1:{shared_redis.port}/0"
        assert coordination["last_error"] is None
        counts.append(coordination["members"])
    assert max(counts) == 3
    result = await run_cli("status", "--url", members[0].url, env=demo_env())
    assert result.returncode == 0, result.stderr
    assert "coordination" in result.stdout
    assert f"redis://127.0.0.1:{shared_redis.port}/0" in result.stdout
    for member in members:
        assert await member.stop() == 0


async def test_a_member_that_joins_is_counted_by_the_others_at_their_next_recount(
    fleet: Fleet, shared_redis: RedisServer, http: aiohttp.ClientSession
) -> None:
    config = fleet.config(shared_redis.url)
    first = await fleet.start(config)
    assert (await get_coordination(http, first.url))["members"] == 1
    second = await fleet.start(config)
    # Well before the first member's next announcement, 5 s after its start.
    deadline = time.monotonic() + 2 * RECOUNT_EVERY_SECONDS
    while (count := (await get_coordination(http, first.url))["members"]) != 2:
        assert time.monotonic() < deadline, count
        await asyncio.sleep(0.05)
    for member in (first, second):
        assert await member.stop() == 0


async def test_members_not_heard_from_within_15_s_are_not_counted(
    shared_redis: RedisServer, redis_client: redis_asyncio.Redis, key_prefix: str
) -> None:
    link = Link(shared_redis.url, timeout_seconds=1.0)
    await link.start()
    keys = AppKeys(key_prefix, "app")
    try:
        now = time.time()
        await redis_client.zadd(keys.members, {"long-gone": now - HEARD_WITHIN_SECONDS - 5})
        await redis_client.zadd(keys.members, {"recent": now - 2})
        members = Members(link, keys, member_id="me")
        await members.announce()
        assert members.count == 2  # me and recent, not long-gone
        assert await redis_client.ttl(keys.members) > 0
        await redis_client.zadd(keys.members, {"joined-since": now})
        await members.recount()
        assert members.count == 3  # heard without waiting for our next announcement
        await redis_client.zadd(keys.members, {"me": now - HEARD_WITHIN_SECONDS - 1})
        await members.recount()
        assert members.count == 2  # a recount does not announce this member
    finally:
        await link.aclose()


async def test_check_and_token_act_as_members(
    fleet: Fleet, criteo: FakeCriteo, shared_redis: RedisServer, http: aiohttp.ClientSession
) -> None:
    config = fleet.config(shared_redis.url)
    member = await fleet.start(config)
    assert await _get(http, member.url) == (200, None)
    token = await run_cli("token", "--config", str(config), env=demo_env())
    check = await run_cli("check", "--config", str(config), env=demo_env())
    assert token.returncode == 0, token.stderr
    assert check.returncode == 0, check.stderr
    assert len(criteo.token_requests) == 1  # both took the fleet's token from Redis
    assert token.stdout.strip() == criteo.requests[-1].token
    assert f"coordination:   Redis redis://127.0.0.1:{shared_redis.port}/0 answers" in check.stdout
    assert await member.stop() == 0


async def test_check_says_when_redis_does_not_answer(fleet: Fleet) -> None:
    config = fleet.config("redis://127.0.0.1:9/0")
    check = await run_cli("check", "--config", str(config), env=demo_env())
    assert check.returncode == 0, check.stderr  # Redis is not needed for a token
    assert "coordination:   Redis redis://127.0.0.1:9/0:" in check.stdout
    assert "acted alone" in check.stdout


async def test_answers_that_arrive_out_of_order_free_every_slot_they_counted(
    shared_redis: RedisServer, key_prefix: str
) -> None:
    """Criteo counts in order; its answers may come back in any: once every send is
    answered, the window allows exactly what Criteo's lowest word says."""
    link = Link(shared_redis.url, timeout_seconds=1.0)
    await link.start()
    windows = FleetWindows(link, AppKeys(key_prefix, "app"), in_flight_seconds=60)
    reset_at = float(int(time.time()) + 30)
    try:
        probe = await windows.take("api")
        assert (probe.granted, probe.why) == (True, "probe")
        assert probe.send is not None
        await windows.answered("api", send=probe.send, limit=5, remaining=4, reset_at=reset_at)
        second, third = await windows.take("api"), await windows.take("api")
        assert second.send is not None
        assert third.send is not None
        # Criteo counted the second, then the third; the third's answer comes back first.
        await windows.answered("api", send=third.send, limit=5, remaining=2, reset_at=reset_at)
        await windows.answered("api", send=second.send, limit=5, remaining=3, reset_at=reset_at)
        slots = [await windows.take("api") for _ in range(3)]
        assert [s.granted for s in slots] == [True, True, False]  # 2 left, as Criteo says
        assert slots[2].why == "spent"
    finally:
        await link.aclose()
