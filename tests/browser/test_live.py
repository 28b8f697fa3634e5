"""The page is live: a request shows up within 2 s, and polling pauses while the tab is hidden."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import aiohttp
import pytest
from yarl import URL

from proxy.fakes.criteo import FakeCriteo
from tests.browser.conftest import (
    API_PATH,
    LIVE_MS,
    ROWS,
    StartCliServer,
    Tab,
    async_api,
    new_tab,
    open_console,
    row_with_path,
    run_curl,
)
from tests.conftest import CliServer, demo_env

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Route


# --- 1. live ----------------------------------------------------------------------------


async def test_page_shows_a_valid_token_and_a_curl_request_appears_within_2_s_without_reload(
    tab: Tab, proxy: CliServer, criteo: FakeCriteo
) -> None:
    page, expect = tab.page, async_api.expect
    await open_console(tab, proxy)
    token = page.locator("article.profile dl.token")
    await expect(token.locator(".badge")).to_have_text("valid", timeout=5000)
    await expect(token.locator("dt:text-is('client id') + dd")).to_have_text("demo-client")
    await page.evaluate("window.__sameDocument = true")
    assert await page.locator(ROWS).count() == 0

    code, output = await run_curl("-s", proxy.url + API_PATH)
    assert code == 0, output
    assert json.loads(output)["data"][0]["id"] == "12345"
    assert criteo.last_request.raw_path == API_PATH

    row = row_with_path(page, API_PATH)
    await expect(row).to_have_count(1, timeout=LIVE_MS)
    await expect(row.locator("td").nth(4)).to_have_text("200")
    assert await page.evaluate("window.__sameDocument") is True  # no reload happened
    assert [r for r in tab.requests if r.is_navigation_request()] == [tab.requests[0]]


# --- 8. hidden tabs ---------------------------------------------------------------------

# Counts the page's own fetches of its two documents, in the page itself: read in the
# same evaluate that hides the tab, the count cannot lag behind a poll in flight.
COUNT_POLLS = """
window.__polls = { status: 0, requests: 0, inFlight: 0, maxInFlight: 0 };
const realFetch = window.fetch;
window.fetch = function (input, init) {
  const url = String(input);
  const polls = window.__polls;
  if (url.startsWith("/_proxy/status")) polls.status += 1;
  if (!url.startsWith("/_proxy/requests")) return realFetch.call(this, input, init);
  polls.requests += 1;
  polls.inFlight += 1;
  polls.maxInFlight = Math.max(polls.maxInFlight, polls.inFlight);
  return realFetch.call(this, input, init).finally(() => { polls.inFlight -= 1; });
};
"""
SET_VISIBILITY = """(state) => {
  for (const [name, value] of [["visibilityState", state], ["hidden", state === "hidden"]]) {
    Object.defineProperty(document, name, { configurable: true, get: () => value });
  }
  document.dispatchEvent(new Event("visibilitychange"));
  return { ...window.__polls };
}"""

# A function, not an expression: Playwright evals an expression in the page, and the
# console's CSP (rightly) forbids eval.
POLLED_MORE_THAN = "(count) => window.__polls.status > count"
# A later poll of the request list has been made and answered: the earlier ones are done.
POLLED_REQUESTS_SINCE = (
    "(count) => window.__polls.requests > count && window.__polls.inFlight === 0"
)


@pytest.fixture
async def counted_tab(context: BrowserContext) -> Tab:
    return await new_tab(context, COUNT_POLLS)


async def test_polling_stops_while_the_tab_is_hidden_and_resumes_when_it_is_shown(
    counted_tab: Tab, proxy: CliServer, http: aiohttp.ClientSession
) -> None:
    page, expect = counted_tab.page, async_api.expect
    await open_console(counted_tab, proxy)
    await page.wait_for_function(POLLED_MORE_THAN, arg=2, timeout=5000)  # polls while visible

    at_hiding = await page.evaluate(SET_VISIBILITY, "hidden")
    async with http.get(proxy.url + API_PATH) as resp:
        assert resp.status == 200
    # Proving an absence needs a bounded wait: 2.5 s is more than two poll intervals,
    # so a page that still polled would have fetched (and shown the request) by then.
    with pytest.raises(async_api.TimeoutError):
        await page.wait_for_function(POLLED_MORE_THAN, arg=at_hiding["status"], timeout=2500)
    assert await row_with_path(page, API_PATH).count() == 0

    at_showing = await page.evaluate(SET_VISIBILITY, "visible")
    assert at_showing["status"] == at_hiding["status"] + 1  # at once, without a timer
    await expect(row_with_path(page, API_PATH)).to_have_count(1, timeout=LIVE_MS)
    await page.wait_for_function(POLLED_MORE_THAN, arg=at_showing["status"], timeout=5000)
    assert counted_tab.errors == []


async def test_showing_the_tab_while_a_poll_is_in_flight_starts_no_second_poll(
    counted_tab: Tab, proxy: CliServer, http: aiohttp.ClientSession
) -> None:
    """Two polls at once would both ask for ?after=N and show each new request twice."""
    page, expect = counted_tab.page, async_api.expect
    await open_console(counted_tab, proxy)
    held: asyncio.Queue[Route] = asyncio.Queue()
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        held.put_nowait(route)
        await release.wait()
        await route.continue_()

    await page.route(lambda url: URL(url).path == "/_proxy/requests", hold)
    try:
        async with http.get(proxy.url + API_PATH) as resp:
            assert resp.status == 200
        await asyncio.wait_for(held.get(), 5)  # a poll is in flight, and stays there

        await page.evaluate(SET_VISIBILITY, "hidden")
        at_showing = await page.evaluate(SET_VISIBILITY, "visible")
        assert at_showing["inFlight"] == 1  # the poll in flight, no second one
    finally:
        release.set()

    await expect(row_with_path(page, API_PATH)).to_have_count(1, timeout=LIVE_MS)
    await page.wait_for_function(POLLED_REQUESTS_SINCE, arg=at_showing["requests"], timeout=5000)
    assert await row_with_path(page, API_PATH).count() == 1
    assert await page.evaluate("window.__polls.maxInFlight") == 1


async def test_a_proxy_restarted_while_the_tab_was_hidden_shows_its_own_requests_only(
    counted_tab: Tab,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    """The new process counts seq from 1 again: its first requests must not be skipped as
    already seen, and the old process's rows must go."""
    page, expect = counted_tab.page, async_api.expect
    before = await start_cli_server("--upstream", criteo_url, "--port", "0", env=demo_env())
    port = URL(before.url).port
    assert port is not None
    old_paths = [f"/2026-07/echo/before-{n}" for n in range(3)]
    for path in old_paths:
        async with http.get(before.url + path) as resp:
            assert resp.status == 200
    await open_console(counted_tab, before)
    await expect(page.locator(ROWS)).to_have_count(3, timeout=LIVE_MS)
    await row_with_path(page, old_paths[0]).click()
    # Three polls: the old process has served for two poll intervals at least, so the
    # new one demonstrably started later; and polls of one process never look like a
    # restart (which would close the detail).
    await page.wait_for_function(POLLED_MORE_THAN, arg=2, timeout=5000)
    await expect(page.locator("#detail")).to_be_visible()
    await page.evaluate(SET_VISIBILITY, "hidden")

    assert await before.stop() == 0
    after = await start_cli_server("--upstream", criteo_url, "--port", str(port), env=demo_env())
    assert after.url == before.url
    new_paths = [f"/2026-07/echo/after-{n}" for n in range(4)]  # more than the old process had
    for path in new_paths:
        async with http.get(after.url + path) as resp:
            assert resp.status == 200
    await page.evaluate(SET_VISIBILITY, "visible")

    paths = page.locator(f"{ROWS} td.path")
    await expect(paths).to_have_text(list(reversed(new_paths)), timeout=LIVE_MS)
    await expect(page.locator("#detail")).to_be_hidden()  # it showed the old process's seq 1
