"""DESIGN 11, the refresh token of an authorization-code app: one fleet, strict rotation,
each refresh token sent to Criteo at most once; the generation in Redis and in each
member's file; a missing file taken from Redis; a member killed holding the lock."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import pytest

from proxy.coordination.keys import AppKeys, app_id
from proxy.coordination.sealing import Sealer
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from proxy.tokens.store import TokenStore
from tests.conftest import CliServer, demo_env, run_cli
from tests.coordination.conftest import Fleet, code_app_credentials, get_status
from tests.redis_server import RedisServer


def _member_config(fleet: Fleet, name: str, redis_url: str) -> Path:
    """NAME.yaml: a member of an authorization-code app, its store at NAME/tokens.json."""
    credentials = code_app_credentials(fleet.directory / name / "tokens.json")
    return fleet.config(redis_url, name, credentials=credentials)


def _store(tmp_path: Path, name: str) -> TokenStore:
    return TokenStore(str(tmp_path / name / "tokens.json"))


async def _fleet_refresh_token(
    redis: RedisServer, key_prefix: str, criteo_url: str
) -> tuple[int, str]:
    keys = AppKeys(
        key_prefix, app_id(criteo_url + "/oauth2/token", DEMO_CLIENT_ID, "authorization_code")
    )
    client = redis.client()
    try:
        found = await client.hgetall(keys.refresh_token)
    finally:
        await client.aclose()
    generation = int(found[b"generation"])
    sealer = Sealer(DEMO_CLIENT_SECRET.encode())
    token = sealer.open(found[b"ct"].decode(), f"{keys.refresh_token}\n{generation}".encode())
    return generation, token


def _refreshes(criteo: FakeCriteo) -> list[str]:
    return [
        r.form["refresh_token"]
        for r in criteo.token_requests
        if r.form.get("grant_type") == "refresh_token"
    ]


async def test_three_members_rotate_a_single_use_refresh_token_for_a_while(
    fleet: Fleet,
    tmp_path: Path,
    criteo: FakeCriteo,
    criteo_url: str,
    shared_redis: RedisServer,
    key_prefix: str,
    http: aiohttp.ClientSession,
) -> None:
    criteo.expires_in = 2  # the proxies renew each second, on their own clocks
    criteo.refresh_tokens["rt-seed"] = DEMO_CLIENT_ID
    _store(tmp_path, "a").save(DEMO_CLIENT_ID, "rt-seed")  # b and c start without a file
    members: list[CliServer] = []
    for name in ("a", "b", "c"):
        members.append(await fleet.start(_member_config(fleet, name, shared_redis.url)))
    statuses: list[int] = []
    for _ in range(40):  # about 4 s of traffic spread over the members
        statuses += await asyncio.gather(*(get_status(http, m.url) for m in members))
        await asyncio.sleep(0.1)
    assert statuses == [200] * len(statuses)
    sent = _refreshes(criteo)
    assert len(sent) >= 3  # it did rotate, several times
    assert len(sent) == len(set(sent))  # and no refresh token went to Criteo twice
    (live,) = criteo.refresh_tokens
    generation, in_redis = await _fleet_refresh_token(shared_redis, key_prefix, criteo_url)
    assert in_redis == live
    assert generation == len(sent)
    files = [_store(tmp_path, name).load() for name in ("a", "b", "c")]
    assert max(f.generation for f in files) == generation
    assert {f.refresh_token for f in files if f.generation == generation} == {live}
    for member in members:
        assert "invalid_grant" not in member.stderr
        assert await member.stop() == 0


async def test_a_missing_store_is_taken_from_redis_but_not_while_redis_is_away(
    fleet: Fleet, tmp_path: Path, criteo: FakeCriteo, own_redis: RedisServer
) -> None:
    own_redis.start()
    criteo.refresh_tokens["rt-seed"] = DEMO_CLIENT_ID
    _store(tmp_path, "a").save(DEMO_CLIENT_ID, "rt-seed", generation=4)
    first = await fleet.start(_member_config(fleet, "a", own_redis.url))
    second = await fleet.start(_member_config(fleet, "b", own_redis.url))
    stored = _store(tmp_path, "b").load()
    assert stored.generation >= 4
    for member in (first, second):
        assert await member.stop() == 0
    own_redis.stop()
    result = await run_cli(
        "run", "--config", str(_member_config(fleet, "c", own_redis.url)), env=demo_env()
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    # The warning that Redis is unreachable, and the one line that stops the start.
    (line,) = [line for line in result.stderr.splitlines() if "credentials.token_store" in line]
    assert "credentials.token_store" in line
    assert "does not exist" in line
    assert "Redis cannot be read" in line


async def test_a_member_killed_holding_the_lock_is_taken_over_after_its_lease(
    fleet: Fleet,
    criteo: FakeCriteo,
    criteo_url: str,
    shared_redis: RedisServer,
    key_prefix: str,
    http: aiohttp.ClientSession,
) -> None:
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def gate() -> None:
        arrived.set()
        await release.wait()

    criteo.token_gate = gate
    config = fleet.config(
        shared_redis.url,
        upstream={"connect_timeout": 0.5, "response_timeout": 1.5},  # a lease of 2 s
    )
    holder = await fleet.start(config)
    await arrived.wait()  # its warm-up fetch holds the fleet's lock, at Criteo
    holder.process.send_signal(signal.SIGKILL)
    await holder.process.wait()
    token_url = criteo_url + "/oauth2/token"
    lock = AppKeys(key_prefix, app_id(token_url, DEMO_CLIENT_ID, "client_credentials")).token_lock
    client = shared_redis.client()
    try:
        assert await client.exists(lock) == 1  # the dead member's lock, still there
        assert 0 < await client.pttl(lock) <= 2000  # for the rest of its lease
    finally:
        await client.aclose()
    release.set()
    criteo.token_gate = None
    survivor = await fleet.start(config)
    assert await get_status(http, survivor.url) == 200  # after the dead holder's lease ran out
    assert await survivor.stop() == 0


@pytest.mark.parametrize("state_arg", ["--print-url"])
async def test_authorize_writes_both_one_generation_above_and_fails_while_redis_is_away(
    fleet: Fleet,
    tmp_path: Path,
    criteo: FakeCriteo,
    criteo_url: str,
    own_redis: RedisServer,
    key_prefix: str,
    state_arg: str,
) -> None:
    own_redis.start()
    config = _member_config(fleet, "a", own_redis.url)
    _store(tmp_path, "a").save(DEMO_CLIENT_ID, "rt-old", generation=2)
    code = criteo.consent(DEMO_CLIENT_ID, "https://app.example/cb")
    result = await run_cli("authorize", "--config", str(config), "--code", code, env=demo_env())
    assert result.returncode == 0, result.stderr
    generation, in_redis = await _fleet_refresh_token(own_redis, key_prefix, criteo_url)
    stored = _store(tmp_path, "a").load()
    assert (stored.generation, stored.refresh_token) == (generation, in_redis)
    assert generation == 3
    own_redis.stop()
    code = criteo.consent(DEMO_CLIENT_ID, "https://app.example/cb")
    refused = await run_cli("authorize", "--config", str(config), "--code", code, env=demo_env())
    assert refused.returncode == 1, refused.stderr
    assert "Redis" in refused.stderr
    assert "the code was not spent" in refused.stderr
    assert code in criteo.codes  # still there to be used once Redis answers
    assert json.loads((tmp_path / "a" / "tokens.json").read_text())["generation"] == 3
