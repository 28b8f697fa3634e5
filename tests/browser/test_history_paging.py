"""The page pages through a history larger than one answer of /_proxy/requests."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from yarl import URL

from proxy.console.routes import MAX_ANSWER_BYTES
from proxy.fakes.criteo import FakeCriteo
from tests.browser.conftest import (
    LIVE_MS,
    ROWS,
    Tab,
    async_api,
    open_console,
)
from tests.conftest import CliServer

SENT = 200  # the history's default length


async def escapes(request: web.Request) -> web.Response:
    # 8,000 control characters: 48,000 bytes of JSON each, so 200 take about ten answers.
    return web.Response(
        status=500, body=b"\x01" * 8000, headers={"Content-Type": "application/json"}
    )


async def test_a_history_of_many_answers_is_shown_whole_at_once_not_one_answer_a_second(
    tab: Tab, proxy: CliServer, criteo: FakeCriteo, http: aiohttp.ClientSession
) -> None:
    criteo.handlers["/2026-07/escapes"] = escapes
    for _ in range(SENT):
        async with http.get(proxy.url + "/2026-07/escapes") as resp:
            assert resp.status == 500

    await open_console(tab, proxy)
    await async_api.expect(tab.page.locator(ROWS)).to_have_count(SENT, timeout=LIVE_MS)
    await async_api.expect(tab.page.locator("#count")).to_have_text(f"{SENT} of {SENT} shown")
    answers = tab.responses_to("/_proxy/requests")
    assert len(answers) > 1  # it took several answers, each within the bound
    for answer in answers:
        assert len(await answer.body()) <= MAX_ANSWER_BYTES
    afters = [int(URL(a.url).query["after"]) for a in answers]
    assert afters == sorted(afters)
    assert tab.errors == []
