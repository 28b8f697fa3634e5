"""Refresh docs/console.png: the console of `criteo-proxy demo`, with some traffic.

    python docs/screenshot.py [--out docs/console.png] [--chromium /usr/bin/chromium]

Needs the dev extra (Playwright for Python) and a Chromium (Debian's package:
`apt-get install chromium`); Playwright's own browser download is not used.
Everything runs on loopback: the demo's fake Criteo, the proxy, the browser.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from pathlib import Path

import aiohttp
from playwright.async_api import async_playwright

HERE = Path(__file__).resolve().parent
TRAFFIC = [
    ("GET", "/2025-10/advertisers/me"),
    ("GET", "/2025-10/marketing-solutions/me"),
    ("GET", "/2025-10/advertisers/me?fields=name&api_key=not-shown"),
    ("POST", "/2025-10/echo/statistics/report"),
    ("GET", "/2024-07/advertisers/me"),
    ("GET", "/2025-10/campaigns/123456"),  # the fake has no such resource: a Criteo 404
    ("GET", "/2023-01/advertisers/me"),  # a retired version: 410
    ("GET", "/2025-10/advertisers/me"),
]


def chromium_path(given: str | None) -> str:
    path = given or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        sys.exit("screenshot: no chromium found; apt-get install chromium (or --chromium PATH)")
    return path


async def start_demo() -> tuple[asyncio.subprocess.Process, str]:
    command = shutil.which("criteo-proxy", path=os.path.dirname(sys.executable))
    args = [command] if command else [sys.executable, "-m", "proxy"]
    process = await asyncio.create_subprocess_exec(
        *args,
        "demo",
        "--port",
        "0",
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    if process.stdout is None:  # not an assert: python -O would drop it
        raise SystemExit("screenshot: the demo's output could not be read")
    async with asyncio.timeout(20):
        async for raw in process.stdout:
            line = raw.decode()
            if "serving on " in line:
                return process, line.split("serving on ", 1)[1].strip()
    raise SystemExit("screenshot: the demo did not start")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "console.png"))
    parser.add_argument("--chromium", default=None)
    args = parser.parse_args()
    process, url = await start_demo()
    try:
        async with aiohttp.ClientSession() as http:
            for method, path in TRAFFIC:
                async with http.request(
                    method, url + path, json={} if method == "POST" else None
                ) as r:
                    await r.read()
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium_path(args.chromium),
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = await browser.new_page(viewport={"width": 1600, "height": 1000})
            await page.goto(url + "/_proxy/")
            await page.wait_for_selector("#request-rows tr")
            await page.click("#request-rows tr:has(td:text-is('404'))")
            await page.wait_for_selector("#detail:not([hidden])")
            await page.screenshot(path=args.out, full_page=True)
            await browser.close()
        print(f"screenshot: wrote {args.out}")
    finally:
        process.terminate()
        await process.wait()


if __name__ == "__main__":
    asyncio.run(main())
