"""DESIGN 11, what Redis holds: no usable token and no secret anywhere in it, every key
under the prefix with a TTL but the refresh token, and keys that members disagree on
never overwritten."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis_asyncio

from proxy.coordination.sealing import Sealer, Unreadable
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from proxy.tokens.store import TokenStore
from tests.coordination.conftest import (
    Fleet,
    code_app_credentials,
    get_coordination,
    get_status,
    redis_contents,
)
from tests.redis_server import RedisServer


def _all_text(contents: dict[str, object]) -> str:
    return repr(contents)


async def test_no_token_or_secret_is_readable_in_redis_and_every_key_expires_but_one(
    fleet: Fleet,
    tmp_path: Path,
    criteo: FakeCriteo,
    shared_redis: RedisServer,
    redis_client: redis_asyncio.Redis,
    key_prefix: str,
    http: aiohttp.ClientSession,
) -> None:
    criteo.refresh_tokens["rt-seed-4f1c"] = DEMO_CLIENT_ID
    store = TokenStore(str(tmp_path / "store" / "tokens.json"))
    store.save(DEMO_CLIENT_ID, "rt-seed-4f1c")
    criteo.rate_limit, criteo.rate_window_seconds = 50, 60
    config = fleet.config(shared_redis.url, credentials=code_app_credentials(store.path))
    member = await fleet.start(config)
    for _ in range(3):
        assert await get_status(http, member.url) == 200
    contents = await redis_contents(redis_client, key_prefix)
    text = _all_text(contents)
    secrets = {DEMO_CLIENT_SECRET, store.load().refresh_token, "rt-seed-4f1c"}
    secrets |= {str(r.token) for r in criteo.requests}  # the access token in use
    for secret in secrets:
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode() not in text
    assert DEMO_CLIENT_ID not in " ".join(contents)  # not even the client id in a key name
    kinds = {key.rsplit(":", 1)[-1] for key in contents}
    assert {"access-token", "refresh-token", "members", "api"} <= kinds
    for key in contents:
        ttl = await redis_client.ttl(key)  # -1: kept for ever; -2: gone since the scan
        if key.endswith(":refresh-token"):
            assert ttl == -1  # losing it would mean a new consent
        else:
            # A window's sends in flight empty (and vanish) as the last answer is counted,
            # which may come after the client has its body.
            assert ttl > 0 or ttl == -2, key
    assert await member.stop() == 0


async def test_members_that_disagree_on_the_key_act_alone_and_overwrite_nothing(
    fleet: Fleet,
    criteo: FakeCriteo,
    shared_redis: RedisServer,
    redis_client: redis_asyncio.Redis,
    key_prefix: str,
    http: aiohttp.ClientSession,
) -> None:
    key_a = base64.b64encode(os.urandom(32)).decode()
    key_b = base64.b64encode(os.urandom(32)).decode()

    def config(name: str, key: str) -> Path:
        return fleet.config(shared_redis.url, name, coordination={"encryption_key": key})

    first = await fleet.start(config("a", key_a))
    assert await get_status(http, first.url) == 200
    before = await redis_contents(redis_client, key_prefix)
    other = await fleet.start(config("b", key_b))
    for _ in range(3):
        assert await get_status(http, other.url) == 200
    await other.wait_for_output(lambda: any("disagree" in line for line in other.stderr_lines))
    assert (await get_coordination(http, other.url))["state"] == "down"
    after = await redis_contents(redis_client, key_prefix)
    access = next(key for key in before if key.endswith(":access-token"))
    assert after[access] == before[access]  # the other member's token, untouched
    assert len(criteo.token_requests) == 2  # the disagreeing member fetched its own
    for member in (first, other):
        assert await member.stop() == 0
    assert len([line for line in other.stderr_lines if "disagree" in line]) == 1  # once
    assert key_a not in first.stderr + other.stderr
    assert key_b not in first.stderr + other.stderr


async def test_the_previous_key_still_reads_so_that_the_key_can_rotate(
    fleet: Fleet, criteo: FakeCriteo, shared_redis: RedisServer, http: aiohttp.ClientSession
) -> None:
    old = base64.b64encode(os.urandom(32)).decode()
    new = base64.b64encode(os.urandom(32)).decode()
    old_config = fleet.config(shared_redis.url, "old", coordination={"encryption_key": old})
    first = await fleet.start(old_config)
    assert await get_status(http, first.url) == 200
    new_config = fleet.config(
        shared_redis.url,
        "new",
        coordination={"encryption_key": new, "previous_encryption_key": old},
    )
    second = await fleet.start(new_config)
    assert await get_status(http, second.url) == 200
    assert len(criteo.token_requests) == 1  # the token sealed under the old key was read
    assert not any("disagree" in line for line in second.stderr_lines)
    for member in (first, second):
        assert await member.stop() == 0


def test_sealed_values_are_bound_to_their_key_name() -> None:
    sealer = Sealer(b"x" * 32)
    sealed = sealer.seal("a-token", b"prefix:app:access-token")
    assert "a-token" not in sealed
    assert sealer.open(sealed, b"prefix:app:access-token") == "a-token"
    with pytest.raises(Unreadable):
        sealer.open(sealed, b"prefix:other-app:access-token")
