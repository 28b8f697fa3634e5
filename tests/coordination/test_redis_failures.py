"""DESIGN 11, when Redis fails: down, slow or refusing credentials, no request fails
for it; each member acts alone, says so once, and rejoins when Redis answers. The
password is never shown."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.fakes.criteo import DEMO_CLIENT_ID, FakeCriteo
from proxy.tokens.store import TokenStore
from tests.conftest import CliServer
from tests.coordination.conftest import (
    Fleet,
    code_app_credentials,
    get_coordination,
    get_status,
)
from tests.redis_server import RedisServer


async def _metric(http: aiohttp.ClientSession, url: str, name: str) -> dict[str, float]:
    async with http.get(url + "/_proxy/metrics") as answer:
        text = await answer.text()
    return {
        ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def _wait_for_line(member: CliServer, fragment: str, count: int = 1) -> None:
    await member.wait_for_output(
        lambda: sum(fragment in line for line in member.stderr_lines) >= count, timeout=40
    )


async def test_redis_killed_and_restarted_mid_traffic_fails_no_request(
    fleet: Fleet, own_redis: RedisServer, http: aiohttp.ClientSession
) -> None:
    own_redis.start()
    config = fleet.config(own_redis.url)
    members = [await fleet.start(config) for _ in range(2)]  # one after the other
    statuses: list[int] = []
    stop_traffic = asyncio.Event()

    async def traffic() -> None:
        while not stop_traffic.is_set():
            statuses.extend(await asyncio.gather(*(get_status(http, m.url) for m in members)))

    running = asyncio.create_task(traffic())
    assert (await get_coordination(http, members[0].url))["state"] == "up"
    own_redis.stop()
    for member in members:
        await _wait_for_line(member, "unreachable")
    down = await get_coordination(http, members[0].url)
    assert down["state"] == "down"
    assert down["members"] is None
    assert isinstance(down["last_error"], str)
    assert await _metric(http, members[0].url, "criteo_proxy_coordination_up") == {"": 0.0}
    assert await get_status(http, members[0].url, "/_proxy/ready") == 200  # Redis never changes it
    errors = await _metric(http, members[0].url, "criteo_proxy_coordination_errors_total")
    assert sum(errors.values()) >= 1
    own_redis.start()
    for member in members:
        await _wait_for_line(member, "rejoined the fleet")
    stop_traffic.set()
    await running
    assert (await get_coordination(http, members[0].url))["state"] == "up"
    assert await _metric(http, members[0].url, "criteo_proxy_coordination_up") == {"": 1.0}
    assert statuses
    assert set(statuses) == {200}
    for member in members:
        warnings = [line for line in member.stderr_lines if "acting alone" in line]
        assert len(warnings) == 1, member.stderr  # once per outage
        assert "Traceback" not in member.stderr
        assert await member.stop() == 0


async def test_a_member_that_rotated_alone_gives_redis_its_newer_generation_on_rejoin(
    fleet: Fleet,
    tmp_path: Path,
    criteo: FakeCriteo,
    own_redis: RedisServer,
    key_prefix: str,
    http: aiohttp.ClientSession,
) -> None:
    criteo.expires_in = 2  # a member alone refreshes once its token has expired
    criteo.refresh_tokens["rt-seed"] = DEMO_CLIENT_ID
    store = TokenStore(str(tmp_path / "store" / "tokens.json"))
    store.save(DEMO_CLIENT_ID, "rt-seed", generation=1)
    own_redis.start()
    config = fleet.config(own_redis.url, credentials=code_app_credentials(store.path))
    member = await fleet.start(config)
    assert await get_status(http, member.url) == 200
    own_redis.stop()  # an empty Redis comes back: only the member knows the token
    await _wait_for_line(member, "unreachable")
    before = store.load().generation
    while store.load().generation == before:  # rotates alone, once its token expired
        assert await get_status(http, member.url) == 200
        await asyncio.sleep(0.2)
    own_redis.start()
    # Once at start (Redis was empty), once on rejoin.
    await _wait_for_line(member, "gave the fleet our newer refresh token", count=2)
    client = own_redis.client()
    try:
        keys = [k async for k in client.scan_iter(match=f"{key_prefix}:*:refresh-token")]
        (key,) = keys
        assert int(await client.hget(key, "generation")) == store.load().generation
    finally:
        await client.aclose()
    assert await member.stop() == 0


async def test_refused_credentials_fail_no_request_and_never_show_the_password(
    fleet: Fleet, own_redis: RedisServer, http: aiohttp.ClientSession
) -> None:
    own_redis.password = "the-real-redis-password"
    own_redis.start()
    wrong = f"redis://:not-the-password-7731@127.0.0.1:{own_redis.port}/0"
    member = await fleet.start(fleet.config(wrong))
    assert await get_status(http, member.url) == 200
    coordination = await get_coordination(http, member.url)
    assert coordination["state"] == "down"
    assert coordination["redis"] == f"redis://127.0.0.1:{own_redis.port}/0"
    async with http.get(member.url + "/_proxy/status") as answer:
        status_text = await answer.text()
    async with http.get(member.url + "/_proxy/metrics") as answer:
        metrics_text = await answer.text()
    assert await member.stop() == 0
    for text in (status_text, metrics_text, member.stderr, member.stdout):
        assert "not-the-password-7731" not in text
        assert "the-real-redis-password" not in text
    assert any("acting alone" in line for line in member.stderr_lines)


async def test_a_redis_slower_than_the_timeout_fails_no_request(
    fleet: Fleet, criteo: FakeCriteo, own_redis: RedisServer, http: aiohttp.ClientSession
) -> None:
    own_redis.start()
    member = await fleet.start(fleet.config(own_redis.url, coordination={"timeout": 0.2}))
    assert await get_status(http, member.url) == 200
    client = own_redis.client()
    try:
        await client.execute_command("CLIENT", "PAUSE", "3000", "ALL")  # Redis stops answering
        criteo.revoke_tokens()  # the member needs a token now, and asks Redis first
        assert await get_status(http, member.url) == 200
        await _wait_for_line(member, "coordination.timeout")
    finally:
        await client.execute_command("CLIENT", "UNPAUSE")
        await client.aclose()
    assert await member.stop() == 0


def test_a_plain_redis_url_off_this_machine_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Built only, never started: no connection is tried to the documentation address."""
    from proxy.config.schema import CoordinationConfig, Secret
    from proxy.coordination.member import Member

    def build(url: str) -> None:
        Member(
            CoordinationConfig(redis_url=Secret(url)),
            token_url="http://127.0.0.1:9/oauth2/token",
            client_id="c",
            grant_type="client_credentials",
            client_secret="s",
        )

    with caplog.at_level(logging.WARNING, logger="criteo_proxy.coordination"):
        build("redis://:pw-9@192.0.2.10:6379/0")  # TEST-NET-1: no traffic, never started
        build("rediss://192.0.2.10:6379/0")
        build("redis://127.0.0.1:6379/0")
        build("unix:///run/redis.sock")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "redis://192.0.2.10:6379/0 is reached without TLS" in warnings[0]
    assert "pw-9" not in warnings[0]
