"""A failed row says whose side it is on and what to do, in the row itself; the table
fits a 1,280 px screen; no "no requests yet" flashes before the first poll answers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from yarl import URL

from proxy.fakes.criteo import FakeCriteo
from tests.browser.conftest import (
    API_PATH,
    LIVE_MS,
    ROWS,
    Tab,
    async_api,
    new_tab,
    open_console,
    row_with_path,
)
from tests.conftest import CliServer

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Route


REPORT_PATH = "/2026-07/statistics/report"
LONG_PATH = "/2026-07/advertisers/12345/campaigns?fields=" + ",".join(
    f"field{i}" for i in range(40)
)


async def criteo_refuses_the_report(request: web.Request) -> web.Response:
    error = {
        "traceId": "9f3c1a0e7b2d4c65a1e0f3b9d8c7a6b5",
        "type": "validation",
        "code": "invalid-dimensions",
        "title": "Invalid dimensions",
        "detail": "The dimension 'Hour' cannot be combined with the metric 'Clicks'",
    }
    return web.json_response({"errors": [error], "warnings": []}, status=400)


async def test_a_failed_row_says_whose_side_and_what_to_do_without_a_click(
    tab: Tab, proxy: CliServer, criteo: FakeCriteo, http: aiohttp.ClientSession
) -> None:
    page, expect = tab.page, async_api.expect
    criteo.handlers[REPORT_PATH] = criteo_refuses_the_report
    criteo.planned_failures["/2026-07/marketing-solutions/me"] = [503, 503, 503]
    async with http.get(proxy.url + API_PATH) as resp:
        assert resp.status == 200
    async with http.post(proxy.url + REPORT_PATH, json={}) as resp:
        assert resp.status == 400
    async with http.get(proxy.url + "/2026-07/marketing-solutions/me") as resp:
        assert resp.status == 503

    await open_console(tab, proxy)
    await expect(page.locator(ROWS)).to_have_count(3, timeout=LIVE_MS)
    report = row_with_path(page, REPORT_PATH)
    await expect(report.locator("td.who")).to_have_text("request")
    await expect(report.locator("td.advice")).to_contain_text("Invalid dimensions")
    await expect(report.locator("td.advice")).to_contain_text("cannot be combined")
    await expect(report.locator("td.advice")).to_be_visible()
    outage = row_with_path(page, "/2026-07/marketing-solutions/me")
    await expect(outage.locator("td.who")).to_have_text("criteo")
    await expect(outage.locator("td.advice")).to_contain_text("the proxy retried it")
    fine = row_with_path(page, API_PATH)
    await expect(fine.locator("td.who")).to_have_text("")
    await expect(fine.locator("td.advice")).to_have_text("")
    await expect(page.locator("#detail")).to_be_hidden()  # all of it without a click
    assert tab.errors == []


async def test_the_request_table_fits_a_1280_px_screen(
    browser: Browser, proxy: CliServer, criteo: FakeCriteo, http: aiohttp.ClientSession
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    tab = await new_tab(context)
    criteo.handlers[REPORT_PATH] = criteo_refuses_the_report
    async with http.post(proxy.url + REPORT_PATH, json={}) as resp:
        assert resp.status == 400
    async with http.get(URL(proxy.url + LONG_PATH, encoded=True)) as resp:
        assert resp.status == 404
    async with http.get(proxy.url + API_PATH, headers={"X-Request-Id": "r" * 64}) as resp:
        assert resp.status == 200

    await open_console(tab, proxy)
    await async_api.expect(tab.page.locator(ROWS)).to_have_count(3, timeout=LIVE_MS)
    widths = await tab.page.evaluate(
        """() => {
          const wrap = document.querySelector(".table-wrap");
          return {
            page: document.documentElement.scrollWidth,
            wrapScroll: wrap.scrollWidth,
            wrapClient: wrap.clientWidth,
          };
        }"""
    )
    assert widths["page"] <= 1280, widths
    assert widths["wrapScroll"] <= widths["wrapClient"], widths  # no sideways scrolling
    await context.close()


# Notes whether #no-requests was ever shown, from the first parse of the page on.
WATCH_NO_REQUESTS = """
window.__noRequestsShown = [];
document.addEventListener("DOMContentLoaded", () => {
  const note = (el) => { if (!el.hidden) window.__noRequestsShown.push(performance.now()); };
  const el = document.getElementById("no-requests");
  note(el);
  new MutationObserver(() => note(el)).observe(el, { attributes: true });
});
"""


async def test_no_requests_yet_never_flashes_before_the_first_poll_answers(
    context: BrowserContext, proxy: CliServer, http: aiohttp.ClientSession
) -> None:
    tab = await new_tab(context, WATCH_NO_REQUESTS)
    page, expect = tab.page, async_api.expect
    async with http.get(proxy.url + API_PATH) as resp:
        assert resp.status == 200
    held: asyncio.Queue[Route] = asyncio.Queue()

    async def hold(route: Route) -> None:
        held.put_nowait(route)

    await page.route(lambda url: URL(url).path == "/_proxy/requests", hold)
    await page.goto(proxy.url + "/_proxy/")
    first = await asyncio.wait_for(held.get(), 5)  # the first poll, held unanswered
    await expect(page.locator("#no-requests")).to_be_hidden()
    await page.unroute(lambda url: URL(url).path == "/_proxy/requests")
    await first.continue_()

    await expect(page.locator(ROWS)).to_have_count(1, timeout=LIVE_MS)
    assert await page.evaluate("() => window.__noRequestsShown") == []
    assert tab.errors == []


async def test_an_empty_history_says_so_once_the_first_poll_answered(
    tab: Tab, proxy: CliServer
) -> None:
    await open_console(tab, proxy)
    await async_api.expect(tab.page.locator("#no-requests")).to_be_visible()
