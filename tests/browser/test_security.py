"""The console in a real browser: headless Chromium against the installed command.

The proxy runs as ``criteo-proxy --upstream <fake> --port 0`` (a subprocess, as
users run it) in front of the fake Criteo; Debian's Chromium, driven by
Playwright for Python, loads ``http://127.0.0.1:PORT/_proxy/``. Playwright's own
browser download is never used. Everything listens on and talks to loopback
only: the fake, the proxy, the other-origin page, the browser (no proxy server).

Each test launches its own browser: pytest-asyncio runs function-scoped
fixtures (the fake, the CLI server) in the test's own event loop, and a browser
shared by the module would live in another loop; a launch costs about half a
second.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shlex
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from tests.conftest import CliServer, clean_env, raw_request

if TYPE_CHECKING:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Locator,
        Page,
        Playwright,
        Request,
        Response,
        Route,
    )

# Skipped where there is no browser; CI sets CONSOLE_BROWSER_TESTS=required (.ci/run),
# and there a missing Playwright or Chromium fails instead.
REQUIRED = os.environ.get("CONSOLE_BROWSER_TESTS") == "required"
if REQUIRED:
    async_api = importlib.import_module("playwright.async_api")
else:
    async_api = pytest.importorskip(
        "playwright.async_api", reason="Playwright for Python is not installed (the dev extra)"
    )

CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and Path(p).exists()), None
)
NO_CHROMIUM = "no Chromium at /usr/bin/chromium (apt-get install chromium)"
if REQUIRED and CHROMIUM is None:
    raise RuntimeError(f"CONSOLE_BROWSER_TESTS=required, but {NO_CHROMIUM}")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",  # never an http_proxy from the environment: loopback only
]

StartCliServer = Callable[..., Awaitable[CliServer]]
AiohttpServer = Callable[..., Awaitable[TestServer]]

API_PATH = "/2025-10/advertisers/me"
ROWS = "#request-rows tr"
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
# How long a test waits for the page to show what a request did: the page polls once
# a second, so 2 s is one poll interval plus ample slack.
LIVE_MS = 2000


def demo_env() -> dict[str, str]:
    return clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET)


def origin_of(url: str) -> str:
    parsed = URL(url)
    return f"{parsed.scheme}://{parsed.raw_authority}"


@dataclass
class Tab:
    """A page and what it did: every request and response, every error it logged."""

    page: Page
    requests: list[Request] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    failed: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def watch(self) -> Tab:
        page = self.page
        page.on("request", lambda r: self._note(self.requests, r))
        page.on("response", lambda r: self._note(self.responses, r))
        page.on("requestfailed", lambda r: self._note(self.failed, r))
        page.on("console", self._on_console)
        page.on("pageerror", lambda e: self._note(self.errors, f"pageerror: {e}"))
        return self

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self._note(self.errors, f"console {message.type}: {message.text}")

    def _note(self, into: list[Any], item: Any) -> None:
        into.append(item)
        self._changed.set()

    async def wait_until(self, check: Callable[[], bool], timeout: float = 5) -> None:
        """Wait for the page's events until CHECK holds (no polling: each event wakes it)."""
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()
                if check():
                    return
                await self._changed.wait()

    def responses_to(self, path: str) -> list[Response]:
        return [r for r in self.responses if URL(r.url).path == path]


@pytest.fixture
async def playwright() -> AsyncIterator[Playwright]:
    async with async_api.async_playwright() as driver:
        yield driver


async def launch(playwright: Playwright, *extra_args: str) -> Browser:
    return await playwright.chromium.launch(
        executable_path=CHROMIUM, args=[*BROWSER_ARGS, *extra_args]
    )


@pytest.fixture
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    browser = await launch(playwright)
    yield browser
    await browser.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context()
    yield context
    await context.close()


@pytest.fixture
async def tab(context: BrowserContext) -> Tab:
    return Tab(await context.new_page()).watch()


@pytest.fixture
async def proxy(criteo_url: str, start_cli_server: StartCliServer) -> CliServer:
    """``criteo-proxy --upstream <fake> --port 0``, with the fake's demo credentials."""
    return await start_cli_server("--upstream", criteo_url, "--port", "0", env=demo_env())


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client, like curl: no proxies from the environment."""
    async with aiohttp.ClientSession() as session:
        yield session


async def run_curl(*args: str, timeout: float = 10) -> tuple[int, str]:
    """Run curl without blocking the loop (the fake Criteo serves in this very loop)."""
    process = await asyncio.create_subprocess_exec(
        "curl",
        "--noproxy",
        "*",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, stdout.decode() + stderr.decode()


async def history(http: aiohttp.ClientSession, proxy: CliServer) -> list[dict[str, Any]]:
    """The proxy's /_proxy/requests, read the way a tool reads it (no Origin, no cookie)."""
    async with http.get(proxy.url + "/_proxy/requests") as resp:
        assert resp.status == 200
        document = await resp.json()
    records: list[dict[str, Any]] = document["requests"]
    return records


def row_with_path(page: Page, path: str) -> Locator:
    return page.locator(ROWS, has=page.locator("td.path", has_text=path))


async def open_console(tab: Tab, proxy: CliServer) -> None:
    """Load the console and wait until its first poll has been shown."""
    response = await tab.page.goto(proxy.url + "/_proxy/")
    assert response is not None
    assert response.status == 200
    await async_api.expect(tab.page.locator("#live")).to_contain_text("live", timeout=LIVE_MS)


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


# --- 2. text, never HTML ----------------------------------------------------------------

# As Criteo's router sees them (decoded), and as they are sent.
ENCODED_XSS_PATH = "/2025-10/%3Cimg%20src=x%20onerror=window.__xss=1%3E"
DECODED_XSS_PATH = "/2025-10/<img src=x onerror=window.__xss=1>"
RAW_XSS_PATH = "/2025-10/<img/src=x/onerror=window.__xss=3>"  # no space: valid raw target
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
    await expect(raw_row.locator("td").nth(10)).to_have_text(TRACE_ID_XSS)
    encoded_row = row_with_path(page, ENCODED_XSS_PATH)
    await expect(encoded_row.locator("td").nth(9)).to_have_text(REQUEST_ID_XSS)

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
    await context.add_init_script(RECORD_CSP_VIOLATIONS)
    tab = Tab(await context.new_page()).watch()
    page, expect = tab.page, async_api.expect
    for path in (API_PATH, "/2025-10/campaigns/123456"):  # a 200 and a Criteo 404 to render
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


# --- 7. filters, search, the detail -----------------------------------------------------

NOT_FOUND_PATH = "/2025-10/campaigns/123456"


async def criteo_redirects(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/2025-10/advertisers/me"})


async def criteo_fails(request: web.Request) -> web.Response:
    error = {"traceId": "t-500", "type": "unknown", "code": "internal-error", "title": "Oops"}
    return web.json_response({"errors": [error], "warnings": []}, status=500)


async def test_filters_and_search_narrow_the_table_and_a_failed_row_gives_criteos_error_and_curl(
    tab: Tab, proxy: CliServer, criteo: FakeCriteo, http: aiohttp.ClientSession
) -> None:
    page, expect = tab.page, async_api.expect
    criteo.handlers["/2025-10/moved"] = criteo_redirects
    criteo.handlers["/2025-10/broken"] = criteo_fails
    sent = {API_PATH: 200, "/2025-10/moved": 302, NOT_FOUND_PATH: 404, "/2025-10/broken": 500}
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
        ("3xx", ["/2025-10/moved"]),
        ("4xx", [NOT_FOUND_PATH]),
        ("5xx", ["/2025-10/broken"]),
        ("failed", ["/2025-10/broken", NOT_FOUND_PATH]),
        ("all", list(reversed(sent))),  # newest first
    ]:
        await page.locator(".filters button", has_text=button).click()
        assert await shown() == paths, button
        await expect(page.locator("#count")).to_have_text(f"{len(paths)} of 4 shown")

    search = page.locator("#search")
    for query, paths in [
        ("campaigns", [NOT_FOUND_PATH]),
        ("RESOURCE-not-found", [NOT_FOUND_PATH]),  # in Criteo's error body, any case
        ("t-500", ["/2025-10/broken"]),  # Criteo's traceId
        ("no such thing", []),
    ]:
        await search.fill(query)
        assert await shown() == paths, query
    await page.locator(".filters button", has_text="2xx").click()
    await search.fill("2025-10")
    assert await shown() == [API_PATH]  # the class and the search together
    await search.fill("")
    await page.locator(".filters button", has_text="all").click()
    assert len(await shown()) == 4

    await row_with_path(page, NOT_FOUND_PATH).click()
    await expect(page.locator("#detail")).to_be_visible()
    body = json.loads(await page.locator("#detail-body").inner_text())
    assert body["errors"][0]["code"] == "resource-not-found"
    trace_id = body["errors"][0]["traceId"]
    await expect(row_with_path(page, NOT_FOUND_PATH).locator("td").nth(10)).to_have_text(trace_id)
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
    path = "/2025-10/echo/head"
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
    await context.add_init_script(COUNT_POLLS)
    return Tab(await context.new_page()).watch()


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
    old_paths = [f"/2025-10/echo/before-{n}" for n in range(3)]
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
    new_paths = [f"/2025-10/echo/after-{n}" for n in range(4)]  # more than the old process had
    for path in new_paths:
        async with http.get(after.url + path) as resp:
            assert resp.status == 200
    await page.evaluate(SET_VISIBILITY, "visible")

    paths = page.locator(f"{ROWS} td.path")
    await expect(paths).to_have_text(list(reversed(new_paths)), timeout=LIVE_MS)
    await expect(page.locator("#detail")).to_be_hidden()  # it showed the old process's seq 1
