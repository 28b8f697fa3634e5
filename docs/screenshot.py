"""Refresh the console's pictures in docs/, each as a person who met an error sees it.

    python docs/screenshot.py [--out-dir docs] [--only NAME] [--chromium /usr/bin/chromium]

- ``console.png``: ``criteo-proxy demo`` with some traffic, a failed request opened;
- ``console-setup.png``: a failing setup (a wrong client secret);
- ``console-criteo-400.png``: Criteo refusing a report request (400), opened;
- ``console-outage.png``: a transient outage (503s, retried by the proxy).

Needs the dev extra (Playwright for Python) and a Chromium (Debian's package:
`apt-get install chromium`); Playwright's own browser download is not used.
Everything runs on loopback: a fake Criteo (the demo's, or one run here with the
failure each picture needs), the proxy as users run it, the browser. Pages are
1,280 px wide, as on a laptop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from playwright.async_api import Page, async_playwright

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, LIVE_API_VERSION, FakeCriteo

V = LIVE_API_VERSION  # the live version the README's examples use
HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT = 1280, 900
Traffic = list[tuple[str, str]]
DEMO_TRAFFIC: Traffic = [
    ("GET", f"/{V}/advertisers/me"),
    ("GET", f"/{V}/marketing-solutions/me"),
    ("GET", f"/{V}/advertisers/me?fields=name&api_key=not-shown"),
    ("POST", f"/{V}/echo/statistics/report"),
    ("GET", "/2024-07/advertisers/me"),
    ("GET", f"/{V}/campaigns/123456"),  # the fake has no such resource: a Criteo 404
    ("GET", "/2023-01/advertisers/me"),  # a retired version: 410
    ("GET", f"/{V}/advertisers/me"),
]
REPORT = f"/{V}/statistics/report"
WRONG_SECRET = "not-the-secret"  # noqa: S105 - a wrong one on purpose, for the fake


def chromium_path(given: str | None) -> str:
    path = given or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        sys.exit("screenshot: no chromium found; apt-get install chromium (or --chromium PATH)")
    return path


def command() -> list[str]:
    found = shutil.which("criteo-proxy", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "proxy"]


@asynccontextmanager
async def serving(*args: str, secret: str = DEMO_CLIENT_SECRET) -> AsyncIterator[str]:
    """``criteo-proxy ARGS --port 0``; yields the address it serves on."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=secret)
    process = await asyncio.create_subprocess_exec(
        *command(),
        *args,
        "--port",
        "0",
        "--log-level",
        "warning",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        if process.stdout is None:  # not an assert: python -O would drop it
            raise SystemExit("screenshot: the proxy's output could not be read")
        url = ""
        async with asyncio.timeout(20):
            async for raw in process.stdout:
                line = raw.decode()
                if "serving on " in line:
                    url = line.split("serving on ", 1)[1].strip()
                    break
        if not url:
            raise SystemExit("screenshot: the proxy did not start")
        yield url
    finally:
        process.terminate()
        await process.wait()


@asynccontextmanager
async def fake_criteo(fake: FakeCriteo) -> AsyncIterator[str]:
    runner = web.AppRunner(fake.build_app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def send(url: str, traffic: Traffic) -> None:
    async with aiohttp.ClientSession() as http:
        for method, path in traffic:
            body = {"format": "csv", "dimensions": ["Hour"]} if method == "POST" else None
            async with http.request(method, url + path, json=body) as response:
                await response.read()


async def refuse_the_report(request: web.Request) -> web.Response:
    error = {
        "traceId": "7c1e5b0a9d2f4e83b6a4c2d1e0f9a8b7",
        "type": "validation",
        "code": "invalid-report-dimensions",
        "instance": REPORT,
        "title": "Invalid report dimensions",
        "detail": "The dimension 'Hour' cannot be used with a date range over 3 days",
    }
    return web.json_response({"errors": [error], "warnings": []}, status=400)


Action = Callable[[Page], Awaitable[None]]
Shoot = Callable[[str, Action], Awaitable[None]]  # the console at URL, after ACTION


async def nothing(page: Page) -> None:
    return None


def open_row(status: int) -> Action:
    async def click(page: Page) -> None:
        await page.click(f"#request-rows tr:has(td.status:text-is('{status}'))")
        await page.wait_for_selector("#detail:not([hidden])")

    return click


async def demo(shoot: Shoot) -> None:
    async with serving("demo") as url:
        await send(url, DEMO_TRAFFIC)
        await shoot(url, open_row(404))


async def wrong_secret(shoot: Shoot) -> None:
    async with (
        fake_criteo(FakeCriteo(rate_limit=250)) as criteo,
        serving("--upstream", criteo, secret=WRONG_SECRET) as url,
    ):
        await send(url, [("GET", f"/{V}/advertisers/me"), ("GET", REPORT)])
        await shoot(url, nothing)


async def criteo_400(shoot: Shoot) -> None:
    fake = FakeCriteo(rate_limit=250)
    fake.handlers[REPORT] = refuse_the_report
    async with fake_criteo(fake) as criteo, serving("--upstream", criteo) as url:
        await send(url, [("GET", f"/{V}/advertisers/me"), ("POST", REPORT)])
        await shoot(url, open_row(400))


async def outage(shoot: Shoot) -> None:
    fake = FakeCriteo(rate_limit=250)
    fake.planned_failures = {
        f"/{V}/marketing-solutions/me": [503],  # retried, then fine
        f"/{V}/advertisers/me": [503, 503, 503],  # retried twice, in vain
        REPORT: [503],  # a POST: not retried
    }
    async with fake_criteo(fake) as criteo, serving("--upstream", criteo) as url:
        traffic = [
            ("GET", f"/{V}/marketing-solutions/me"),
            ("GET", f"/{V}/advertisers/me"),
            ("POST", REPORT),
        ]
        await send(url, traffic)
        await shoot(url, nothing)


SCENES: dict[str, Callable[[Shoot], Awaitable[None]]] = {
    "console.png": demo,
    "console-setup.png": wrong_secret,
    "console-criteo-400.png": criteo_400,
    "console-outage.png": outage,
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out-dir", default=str(HERE))
    parser.add_argument("--only", choices=sorted(SCENES), default=None)
    parser.add_argument("--chromium", default=None)
    args = parser.parse_args()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(args.chromium),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        for name, scene in SCENES.items():
            if args.only not in (None, name):
                continue
            out = Path(args.out_dir) / name

            async def shoot(url: str, action: Action, out: Path = out) -> None:
                context = await browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
                page = await context.new_page()
                await page.goto(url + "/_proxy/")
                await page.wait_for_selector("#request-rows tr")
                await page.wait_for_selector("#live:not(.down)")
                await action(page)
                await page.screenshot(path=str(out), full_page=True)
                await context.close()

            await scene(shoot)
            print(f"screenshot: wrote {out}")
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
