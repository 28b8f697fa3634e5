"""The token panel keeps the last five distinct token errors, newest first (DESIGN 8)."""

from __future__ import annotations

import aiohttp

from proxy.fakes.criteo import DEMO_CLIENT_ID, FakeCriteo
from tests.browser.conftest import (
    API_PATH,
    StartCliServer,
    Tab,
    async_api,
    open_console,
)
from tests.conftest import clean_env


async def test_the_helpful_first_error_stays_in_sight_when_another_follows(
    tab: Tab,
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    page, expect = tab.page, async_api.expect
    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET="wrong-secret-79")
    proxy = await start_cli_server("--upstream", criteo_url, "--port", "0", env=env)
    await open_console(tab, proxy)
    errors = page.locator("article.profile ol.recent-errors li")
    await expect(errors).to_have_count(1, timeout=5000)  # the warm-up's
    await expect(errors.nth(0)).to_contain_text("check CRITEO_CLIENT_ID / CRITEO_CLIENT_SECRET")

    # The back-off over (the page says "failing"), the endpoint now fails another way.
    await expect(page.locator("article.profile .badge")).to_have_text("failing", timeout=5000)
    criteo.token_failure_status = 503
    async with http.get(proxy.url + API_PATH) as resp:
        assert resp.status == 502

    await expect(errors).to_have_count(2, timeout=5000)
    await expect(errors.nth(0)).to_contain_text("answered 503")
    await expect(errors.nth(1)).to_contain_text("check CRITEO_CLIENT_ID / CRITEO_CLIENT_SECRET")
    assert "wrong-secret-79" not in await page.content()
    assert tab.errors == []
