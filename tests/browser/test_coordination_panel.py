"""The console shows a profile's place in the fleet (DESIGN 11): shared or alone, where
Redis is (never its password), how many members it hears."""

from __future__ import annotations

from pathlib import Path

from proxy.fakes.criteo import FakeCriteo
from tests.browser.conftest import (
    StartCliServer,
    Tab,
    async_api,
    open_console,
)
from tests.conftest import demo_env
from tests.coordination.conftest import write_fleet_config
from tests.redis_server import RedisServer


async def test_the_console_shows_the_fleet_and_that_a_member_acts_alone(
    tab: Tab,
    tmp_path: Path,
    criteo: FakeCriteo,
    criteo_url: str,
    own_redis: RedisServer,
    key_prefix: str,
    start_cli_server: StartCliServer,
) -> None:
    page, expect = tab.page, async_api.expect
    own_redis.password = "redis-pw-5512"
    own_redis.start()
    config = write_fleet_config(tmp_path / "fleet.yaml", criteo_url, own_redis.url, key_prefix)
    proxy = await start_cli_server("--config", str(config), env=demo_env())
    await open_console(tab, proxy)
    fleet = page.locator("article.profile dl.coordination")
    await expect(fleet).to_contain_text("shared", timeout=5000)
    await expect(fleet).to_contain_text(f"redis://127.0.0.1:{own_redis.port}/0")
    await expect(fleet).to_contain_text("members")
    own_redis.stop()
    await expect(fleet).to_contain_text("acting alone", timeout=10000)
    await expect(fleet).to_contain_text("last error")
    assert "redis-pw-5512" not in await page.content()
    assert tab.errors == []
