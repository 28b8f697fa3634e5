"""The page is safe: markup stays text, nothing comes from elsewhere, foreign pages are refused."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from proxy.fakes.criteo import FakeCriteo
from tests.browser.conftest import (
    API_PATH,
    LIVE_MS,
    ROWS,
    StartCliServer,
    Tab,
    async_api,
    launch,
    new_tab,
    open_console,
    row_with_path,
)
from tests.conftest import CliServer, demo_env, raw_request

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Playwright


AiohttpServer = Callable[..., Awaitable[TestServer]]

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def origin_of(url: str) -> str:
    parsed = URL(url)
    return f"{parsed.scheme}://{parsed.raw_authority}"


async def history(http: aiohttp.ClientSession, proxy: CliServer) -> list[dict[str, Any]]:
    """The proxy's /_proxy/requests, read the way a tool reads it (no Origin, no cookie)."""
    async with http.get(proxy.url + "/_proxy/requests") as resp:
        assert resp.status == 200
        document = await resp.json()
    records: list[dict[str, Any]] = document["requests"]
    return records


# --- 2. text, never HTML ----------------------------------------------------------------

# As Criteo's router sees them (decoded), and as they are sent.
ENCODED_XSS_PATH = "/2026-07/%3Cimg%20src=x%20onerror=window.__xss=1%3E"
DECODED_XSS_PATH = "/2026-07/<img src=x onerror=window.__xss=1>"
RAW_XSS_PATH = "/2026-07/<img/src=x/onerror=window.__xss=3>"  # no space: valid raw target
SCRIPT_IN_BODY = "<script>window.__xss=2</script>"
TRACE_ID_XSS = "<img/src=x/onerror=window.__xss=4>"
REQUEST_ID_XSS = "<svg/onload=window.__xss=5>"  # visible ASCII: kept as the request id


async def criteo_refuses_with_markup(request: web.Request) -> web.Response:
    """A Criteo 400 whose envelope carries markup in its detail and its traceId."""
    error = {
        "traceId": TRACE_ID_XSS,
        "type": "validation",
        "code": "invalid-path",
        "title": "Invalid path",
        "detail": f"no resource at this path {SCRIPT_IN_BODY}",
    }
    return web.json_response({"errors": [error], "warnings": []}, status=400)


async def test_paths_error_bodies_and_ids_holding_markup_are_shown_as_text_never_run(
    tab: Tab, proxy: CliServer, criteo: FakeCriteo, http: aiohttp.ClientSession
) -> None:
    page, expect = tab.page, async_api.expect
    criteo.handlers[DECODED_XSS_PATH] = criteo_refuses_with_markup
    criteo.handlers[RAW_XSS_PATH] = criteo_refuses_with_markup
    encoded = URL(proxy.url + ENCODED_XSS_PATH, encoded=True)
    async with http.get(encoded, headers={"X-Request-Id": REQUEST_ID_XSS}) as resp:
        assert resp.status == 400
        assert SCRIPT_IN_BODY in await resp.text()
    port = URL(proxy.url).port
    assert port is not None
    raw = await raw_request(
        port,
        f"GET {RAW_XSS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(),
    )
    assert raw.status == 400  # aiohttp takes a raw '<' in the target; the fake answered it
    assert [seen.raw_path for seen in criteo.requests[-2:]] == [ENCODED_XSS_PATH, RAW_XSS_PATH]

    await open_console(tab, proxy)
    await expect(page.locator(ROWS)).to_have_count(2, timeout=LIVE_MS)
    raw_row = row_with_path(page, RAW_XSS_PATH)
    await expect(raw_row.locator("td.path")).to_have_text(RAW_XSS_PATH)  # literally
    await expect(raw_row.locator("td.trace-id")).to_have_text(TRACE_ID_XSS)
    encoded_row = row_with_path(page, ENCODED_XSS_PATH)
    await expect(encoded_row.locator("td.request-id")).to_have_text(REQUEST_ID_XSS)

    await encoded_row.click()
    detail = page.locator("#detail")
    await expect(detail).to_be_visible()
    await expect(page.locator("#detail-id")).to_have_text(REQUEST_ID_XSS)
    await expect(page.locator("#detail-body")).to_contain_text(SCRIPT_IN_BODY)
    await raw_row.click()
    await expect(page.locator("#detail-facts")).to_contain_text(f"GET {RAW_XSS_PATH}")
    await expect(page.locator("#detail-body")).to_contain_text(SCRIPT_IN_BODY)
    await expect(page.locator("#detail-body")).to_contain_text(TRACE_ID_XSS)
    await expect(page.locator("#detail-curl")).to_contain_text(RAW_XSS_PATH)

    injected = "#requests :is(img, script, svg), #detail :is(img, script, svg)"
    assert await page.locator(injected).count() == 0
    tags = await page.evaluate(
        "(selector) => [...document.querySelectorAll(selector)].map((e) => e.tagName)",
        "#request-rows *, #detail-facts *, #detail pre *, #detail-id *",
    )
    assert set(tags) <= {"TR", "TD", "DIV", "DT", "DD"}, tags
    assert await page.evaluate("typeof window.__xss") == "undefined"
    assert tab.failed == []  # nothing tried to load src=x


# --- 3. nothing from elsewhere ----------------------------------------------------------

RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


async def test_page_loads_only_from_the_proxy_with_security_headers_and_no_console_errors(
    context: BrowserContext, proxy: CliServer, http: aiohttp.ClientSession
) -> None:
    tab = await new_tab(context, RECORD_CSP_VIOLATIONS)
    page, expect = tab.page, async_api.expect
    for path in (API_PATH, "/2026-07/campaigns/123456"):  # a 200 and a Criteo 404 to render
        async with http.get(proxy.url + path) as resp:
            await resp.read()

    await open_console(tab, proxy)
    await tab.wait_until(lambda: len(tab.responses_to("/_proxy/status")) >= 3)
    await expect(page.locator(ROWS)).to_have_count(2)
    await page.locator(ROWS, has_text="404").click()
    await expect(page.locator("#detail-body")).to_contain_text("resource-not-found")

    origin = origin_of(proxy.url)
    urls = [r.url for r in tab.requests]
    assert urls, "the page made no request at all"
    assert all(url.startswith(origin + "/") for url in urls), urls
    for path in (
        "/_proxy/",
        "/_proxy/static/console.js",
        "/_proxy/static/console.css",
        "/_proxy/status",
        "/_proxy/requests",
    ):
        answers = tab.responses_to(path)
        assert answers, f"the page never loaded {path}"
        for response in answers:
            assert response.status == 200, (path, response.status)
            headers = await response.all_headers()
            shown = {name: headers.get(name) for name in SECURITY_HEADERS}
            assert shown == SECURITY_HEADERS, path
    assert tab.errors == []
    assert await page.evaluate("window.__cspViolations") == []


# --- 4. other origins -------------------------------------------------------------------

OTHER_ORIGIN_FETCH = """<!doctype html>
<title>another origin</title>
<p id="outcome"></p>
<script>
fetch("{proxy}/_proxy/requests").then(
  (response) => {{ document.getElementById("outcome").textContent = "read " + response.status; }},
  (error) => {{ document.getElementById("outcome").textContent = error.name; }},
);
</script>
"""
OTHER_ORIGIN_EMBEDS = """<!doctype html>
<title>another site</title>
<p id="img"></p><p id="script"></p>
<img src="{proxy}/_proxy/status"
     onload="document.getElementById('img').textContent = 'loaded'"
     onerror="document.getElementById('img').textContent = 'error'">
<script src="{proxy}/_proxy/status"
        onload="document.getElementById('script').textContent = 'loaded'"
        onerror="document.getElementById('script').textContent = 'error'"></script>
"""


async def serve_page(aiohttp_server: AiohttpServer, html: str) -> int:
    """Serve HTML at / from a second server on another loopback port; returns the port."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    server = await aiohttp_server(app)
    assert server.port is not None
    return server.port


@pytest.mark.parametrize(
    "page_host", ["127.0.0.1", "localhost"], ids=["another-port", "another-site"]
)
async def test_a_page_on_another_origin_cannot_read_the_request_history(
    page_host: str,
    tab: Tab,
    proxy: CliServer,
    http: aiohttp.ClientSession,
    aiohttp_server: AiohttpServer,
) -> None:
    """127.0.0.1 on another port is the same site but another origin: refused too."""
    port = await serve_page(aiohttp_server, OTHER_ORIGIN_FETCH.format(proxy=proxy.url))
    other_origin = f"http://{page_host}:{port}"

    await tab.page.goto(other_origin + "/")
    await async_api.expect(tab.page.locator("#outcome")).to_have_text("TypeError")

    refused = [
        r
        for r in await history(http, proxy)
        if r["path"] == "/_proxy/requests" and r["proxy_error"] == "origin_not_allowed"
    ]
    assert len(refused) == 1
    assert refused[0]["status"] == 403
    assert other_origin in refused[0]["error_body"]
    # The refusal names the Origin the browser sent (Chromium does not tell Playwright the
    # headers of a request that failed CORS; the proxy's record does).
    assert f"cross-site browser request refused ({other_origin})" in refused[0]["error_body"]
    sent = [r for r in tab.requests if r.url == proxy.url + "/_proxy/requests"]
    assert [r.resource_type for r in sent] == ["fetch"]
    assert [r.url for r in tab.failed] == [proxy.url + "/_proxy/requests"]


async def test_images_and_scripts_of_another_site_cannot_load_the_status_document(
    tab: Tab, proxy: CliServer, http: aiohttp.ClientSession, aiohttp_server: AiohttpServer
) -> None:
    port = await serve_page(aiohttp_server, OTHER_ORIGIN_EMBEDS.format(proxy=proxy.url))

    await tab.page.goto(f"http://localhost:{port}/")
    await async_api.expect(tab.page.locator("#img")).to_have_text("error")
    await async_api.expect(tab.page.locator("#script")).to_have_text("error")

    refused = [r for r in await history(http, proxy) if r["path"] == "/_proxy/status"]
    assert [(r["status"], r["proxy_error"]) for r in refused] == [
        (403, "origin_not_allowed"),
        (403, "origin_not_allowed"),
    ]
    # No Origin on these loads: Sec-Fetch-Site alone refused them, and the refusal says so.
    assert all("refused (Sec-Fetch-Site: cross-site)" in r["error_body"] for r in refused)
    sent = [r for r in tab.requests if r.url == proxy.url + "/_proxy/status"]
    assert sorted(r.resource_type for r in sent) == ["image", "script"]


# --- 5. another Host --------------------------------------------------------------------


async def test_the_console_under_another_host_name_is_refused_dns_rebinding(
    playwright: Playwright, proxy: CliServer
) -> None:
    port = URL(proxy.url).port
    browser = await launch(playwright, "--host-resolver-rules=MAP rebind.test 127.0.0.1")
    try:
        tab = Tab(await browser.new_page()).watch()
        response = await tab.page.goto(f"http://rebind.test:{port}/_proxy/")
        assert response is not None
        assert response.status == 403
        assert response.url == f"http://rebind.test:{port}/_proxy/"  # really that name
        assert await response.header_value("X-Criteo-Proxy-Error") == "host_not_allowed"
        assert "host_not_allowed" in await tab.page.locator("body").inner_text()
        assert await tab.page.locator("#request-rows, #profiles, script").count() == 0
        # Nothing of the console was loaded: no script, no style, no poll.
        assert tab.requests[0].url == f"http://rebind.test:{port}/_proxy/"
        assert not [r.url for r in tab.requests if "/_proxy/" in r.url][1:]
    finally:
        await browser.close()


# --- 6. inbound keys --------------------------------------------------------------------

PROXY_KEY = "k-123456"
COOKIE_NAME = "criteo_proxy_console_default"


@pytest.fixture
async def keyed_proxy(
    criteo_url: str, start_cli_server: StartCliServer, tmp_path: Path
) -> CliServer:
    config = tmp_path / "criteo-proxy.yaml"
    config.write_text(f'security:\n  api_keys: ["{PROXY_KEY}"]\n', encoding="utf-8")
    return await start_cli_server(
        "--config", str(config), "--upstream", criteo_url, "--port", "0", env=demo_env()
    )


async def test_with_inbound_keys_the_console_takes_the_key_once_and_keeps_a_strict_cookie(
    tab: Tab, context: BrowserContext, keyed_proxy: CliServer, http: aiohttp.ClientSession
) -> None:
    page, expect, console = tab.page, async_api.expect, keyed_proxy.url + "/_proxy/"

    for url in (console, console + "?key=k-wrong"):
        response = await page.goto(url)
        assert response is not None
        assert response.status == 401, url
        assert await response.header_value("X-Criteo-Proxy-Error") == "proxy_key_required"
        assert await page.locator("#request-rows").count() == 0
    assert await context.cookies() == []

    response = await page.goto(console + f"?key={PROXY_KEY}")
    assert response is not None
    assert response.status == 200
    first = response.request.redirected_from
    assert first is not None
    redirect = await first.response()
    assert redirect is not None
    assert redirect.status == 303
    assert await redirect.header_value("Location") == "/_proxy/"
    assert page.url == console  # the key left the address bar at once
    cookies = await context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"], c["path"]) for c in cookies] == [
        (COOKIE_NAME, True, "Strict", "/_proxy/")
    ]
    assert PROXY_KEY not in cookies[0]["value"]
    assert await page.evaluate("document.cookie") == ""

    # Live data through the cookie: polls answer 200, and a request with the key shows up.
    await expect(page.locator("article.profile .badge")).to_have_text("valid", timeout=5000)
    async with http.get(keyed_proxy.url + API_PATH, headers={"X-Proxy-Key": PROXY_KEY}) as resp:
        assert resp.status == 200
    await expect(row_with_path(page, API_PATH)).to_have_count(1, timeout=LIVE_MS)
    polls = tab.responses_to("/_proxy/status") + tab.responses_to("/_proxy/requests")
    assert polls
    assert {r.status for r in polls} == {200}

    # The cookie opens the console, nothing else: not a forwarded path, not the metrics.
    fetch_status = """async (path) => {
        const response = await fetch(path);
        return [response.status, response.headers.get("X-Criteo-Proxy-Error")];
    }"""
    for path in (API_PATH, "/_proxy/metrics"):
        assert await page.evaluate(fetch_status, path) == [401, "proxy_key_required"], path
    cookie = {"Cookie": f"{COOKIE_NAME}={cookies[0]['value']}"}
    async with http.get(keyed_proxy.url + API_PATH, headers=cookie) as resp:
        assert resp.status == 401
        assert resp.headers["X-Criteo-Proxy-Error"] == "proxy_key_required"

    async with http.get(keyed_proxy.url + "/_proxy/requests", headers=cookie) as resp:
        assert resp.status == 200
        kept = await resp.text()
    assert PROXY_KEY not in kept
    assert "k-wrong" not in kept  # the refused page load is kept with its key masked
    assert "/_proxy/?key=***" in kept


async def test_a_console_whose_session_ended_says_to_open_it_with_the_key_again(
    tab: Tab, context: BrowserContext, keyed_proxy: CliServer
) -> None:
    """A restart of the proxy ends the sessions; the page says how to get a new one."""
    page, expect = tab.page, async_api.expect
    response = await page.goto(keyed_proxy.url + f"/_proxy/?key={PROXY_KEY}")
    assert response is not None
    assert response.status == 200
    await expect(page.locator("#live")).to_contain_text("live", timeout=LIVE_MS)

    await context.clear_cookies()  # as a restarted proxy forgets the session

    live = page.locator("#live")
    await expect(live).to_contain_text("/_proxy/?key=", timeout=LIVE_MS)
    await expect(live).to_have_class(re.compile(r"\bdown\b"))
    assert PROXY_KEY not in await live.inner_text()
