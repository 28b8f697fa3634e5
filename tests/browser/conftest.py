"""The console in a real browser: headless Chromium against the installed command.

The proxy runs as ``criteo-proxy --upstream <fake> --port 0`` (a subprocess, as
users run it) in front of the fake Criteo; Debian's Chromium, driven by
Playwright for Python, loads ``http://127.0.0.1:PORT/_proxy/``. Playwright's own
browser download is never used. Everything listens on and talks to loopback
only: the fake, the proxy, the other-origin page, the browser (no proxy server).

Each test launches its own browser: pytest-asyncio runs function-scoped
fixtures (the fake, the CLI server) in the test's own event loop, and a browser
shared by the module would live in another loop; a launch costs about half a
second. Here: the browser, its tabs, the proxy as users run it, and the helpers
that read the page, for every test of this folder.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from yarl import URL

from tests.conftest import CliServer, StartCliServer, clean_env, demo_env

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
    )

# Skipped where there is no browser; CI sets CONSOLE_BROWSER_TESTS=required (.ci/run),
# and there a missing Playwright or Chromium fails instead. A conftest cannot skip at
# import (pytest would stop on it), so without Playwright async_api is None here and
# the autouse fixture ``needs_a_browser`` skips each test of this folder.
REQUIRED = os.environ.get("CONSOLE_BROWSER_TESTS") == "required"
NO_PLAYWRIGHT = "Playwright for Python is not installed (the dev extra)"
try:
    async_api = importlib.import_module("playwright.async_api")
except ModuleNotFoundError:
    if REQUIRED:
        raise
    async_api = None

CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and Path(p).exists()), None
)
NO_CHROMIUM = "no Chromium at /usr/bin/chromium (apt-get install chromium)"
if REQUIRED and CHROMIUM is None:
    raise RuntimeError(f"CONSOLE_BROWSER_TESTS=required, but {NO_CHROMIUM}")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",  # never an http_proxy from the environment: loopback only
]


API_PATH = "/2026-07/advertisers/me"
ROWS = "#request-rows tr"
# How long a test waits for the page to show what a request did: the page polls once
# a second, so 2 s is one poll interval plus ample slack.
LIVE_MS = 2000


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


@pytest.fixture(autouse=True)
def needs_a_browser() -> None:
    """Every test here drives Chromium: skipped without Playwright or without Chromium."""
    if async_api is None:
        pytest.skip(NO_PLAYWRIGHT)
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)


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


async def new_tab(context: BrowserContext, init_script: str | None = None) -> Tab:
    """A watched page of CONTEXT; INIT_SCRIPT, if given, runs in it before the page's own."""
    if init_script is not None:
        await context.add_init_script(init_script)
    return Tab(await context.new_page()).watch()


@pytest.fixture
async def tab(context: BrowserContext) -> Tab:
    return await new_tab(context)


@pytest.fixture
async def proxy(criteo_url: str, start_cli_server: StartCliServer) -> CliServer:
    """``criteo-proxy --upstream <fake> --port 0``, with the fake's demo credentials."""
    return await start_cli_server("--upstream", criteo_url, "--port", "0", env=demo_env())


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


def row_with_path(page: Page, path: str) -> Locator:
    return page.locator(ROWS, has=page.locator("td.path", has_text=path))


async def open_console(tab: Tab, proxy: CliServer) -> None:
    """Load the console and wait until its first poll has been shown."""
    response = await tab.page.goto(proxy.url + "/_proxy/")
    assert response is not None
    assert response.status == 200
    await async_api.expect(tab.page.locator("#live")).to_contain_text("live", timeout=LIVE_MS)
