"""The request table: filters and search, and a row's detail with Criteo's error and a curl."""

from __future__ import annotations

import json
import shlex

import aiohttp
from aiohttp import web

from proxy.fakes.criteo import FakeCriteo
from tests.browser.conftest import (
    API_PATH,
    LIVE_MS,
    ROWS,
    Tab,
    async_api,
    open_console,
    row_with_path,
    run_curl,
)
from tests.conftest import CliServer

# --- 7. filters, search, the detail -----------------------------------------------------

NOT_FOUND_PATH = "/2026-07/campaigns/123456"


async def criteo_redirects(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/2026-07/advertisers/me"})


async def criteo_fails(request: web.Request) -> web.Response:
    error = {"traceId": "t-500", "type": "unknown", "code": "internal-error", "title": "Oops"}
    return web.json_response({"errors": [error], "warnings": []}, status=500)


async def test_filters_and_search_narrow_the_table_and_a_failed_row_gives_criteos_error_and_curl(
    tab: Tab, proxy: CliServer, criteo: FakeCriteo, http: aiohttp.ClientSession
) -> None:
    page, expect = tab.page, async_api.expect
    criteo.handlers["/2026-07/moved"] = criteo_redirects
    criteo.handlers["/2026-07/broken"] = criteo_fails
    sent = {API_PATH: 200, "/2026-07/moved": 302, NOT_FOUND_PATH: 404, "/2026-07/broken": 500}
    for path, status in sent.items():
        async with http.get(proxy.url + path, allow_redirects=False) as resp:
            assert resp.status == status

    await open_console(tab, proxy)
    rows = page.locator(ROWS)
    await expect(rows).to_have_count(4, timeout=LIVE_MS)

    async def shown() -> list[str]:
        return await page.locator(f"{ROWS} td.path").all_text_contents()

    for button, paths in [
        ("2xx", [API_PATH]),
        ("3xx", ["/2026-07/moved"]),
        ("4xx", [NOT_FOUND_PATH]),
        ("5xx", ["/2026-07/broken"]),
        ("failed", ["/2026-07/broken", NOT_FOUND_PATH]),
        ("all", list(reversed(sent))),  # newest first
    ]:
        await page.locator(".filters button", has_text=button).click()
        assert await shown() == paths, button
        await expect(page.locator("#count")).to_have_text(f"{len(paths)} of 4 shown")

    search = page.locator("#search")
    for query, paths in [
        ("campaigns", [NOT_FOUND_PATH]),
        ("RESOURCE-not-found", [NOT_FOUND_PATH]),  # in Criteo's error body, any case
        ("t-500", ["/2026-07/broken"]),  # Criteo's traceId
        ("no such thing", []),
    ]:
        await search.fill(query)
        assert await shown() == paths, query
    await page.locator(".filters button", has_text="2xx").click()
    await search.fill("2026-07")
    assert await shown() == [API_PATH]  # the class and the search together
    await search.fill("")
    await page.locator(".filters button", has_text="all").click()
    assert len(await shown()) == 4

    await row_with_path(page, NOT_FOUND_PATH).click()
    await expect(page.locator("#detail")).to_be_visible()
    body = json.loads(await page.locator("#detail-body").inner_text())
    assert body["errors"][0]["code"] == "resource-not-found"
    trace_id = body["errors"][0]["traceId"]
    await expect(row_with_path(page, NOT_FOUND_PATH).locator("td.trace-id")).to_have_text(trace_id)
    await expect(row_with_path(page, NOT_FOUND_PATH)).to_have_class("selected")
    command = await page.locator("#detail-curl").inner_text()
    assert command == f"curl '{proxy.url}{NOT_FOUND_PATH}'"
    assert "authorization" not in command.lower()
    assert "x-proxy-key" not in command.lower()

    argv = shlex.split(command)
    assert argv[0] == "curl"
    seen_before = len(criteo.requests)
    code, output = await run_curl("-s", *argv[1:])  # the command as a user pastes it
    assert code == 0, output
    assert json.loads(output)["errors"][0]["code"] == "resource-not-found"
    assert [r.raw_path for r in criteo.requests[seen_before:]] == [NOT_FOUND_PATH]
    assert criteo.last_request.token in criteo.issued  # the proxy added the token

    await page.locator("#detail-close").click()
    await expect(page.locator("#detail")).to_be_hidden()
    await expect(page.locator(f"{ROWS}.selected")).to_have_count(0)


async def test_the_curl_of_a_head_request_asks_for_the_head_and_returns(
    tab: Tab, proxy: CliServer, criteo: FakeCriteo, http: aiohttp.ClientSession
) -> None:
    """`curl -X HEAD` would wait for a body that never comes (curl's own warning): --head."""
    path = "/2026-07/echo/head"
    async with http.head(proxy.url + path) as resp:
        assert resp.status == 200

    await open_console(tab, proxy)
    await row_with_path(tab.page, path).click()
    command = await tab.page.locator("#detail-curl").inner_text()
    assert command == f"curl --head '{proxy.url}{path}'"

    argv = shlex.split(command)
    code, output = await run_curl("-s", "--max-time", "5", *argv[1:])
    assert code == 0, (code, output)  # 28 would be the timeout of a curl waiting for a body
    assert output.startswith("HTTP/1.1 200")
    assert criteo.last_request.method == "HEAD"
