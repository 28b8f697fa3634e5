"""20 sequential `criteo-proxy token` calls: with --fresh (what every call cost
before the cache) against the cached default, side by side in one run.

    python tests/bench/token_cache.py [--calls 20]

The fake Criteo runs in this process on 127.0.0.1; the cache lives in a
temporary XDG_CACHE_HOME.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time

from aiohttp import web

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo


async def calls(url: str, count: int, env: dict[str, str], *extra: str) -> float:
    command = shutil.which("criteo-proxy", path=os.path.dirname(sys.executable))
    args = [command] if command else [sys.executable, "-m", "proxy"]
    started = time.perf_counter()
    for _ in range(count):
        process = await asyncio.create_subprocess_exec(
            *args,
            "token",
            "--upstream",
            url,
            *extra,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"token failed: {stderr.decode()}")
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    count = parser.parse_args().calls
    fake = FakeCriteo()
    runner = web.AppRunner(fake.build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as cold:
        env = {
            **os.environ,
            "XDG_CACHE_HOME": cache,
            "CRITEO_CLIENT_ID": DEMO_CLIENT_ID,
            "CRITEO_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        }
        fresh = await calls(url, count, env, "--fresh")
        fresh_requests = len(fake.token_requests)
        cached = await calls(url, count, {**env, "XDG_CACHE_HOME": cold})  # starts empty
        cached_requests = len(fake.token_requests) - fresh_requests
    await runner.cleanup()
    print(f"{count} sequential `criteo-proxy token` calls against the fake on loopback")
    print(
        f"  --fresh (every call fetches, as before the cache): {fresh:.2f} s, "
        f"{fresh_requests} token requests"
    )
    print(
        f"  cached (the default):                             {cached:.2f} s, "
        f"{cached_requests} token requests"
    )
    print(
        f"  ratio cached / fresh: {cached / fresh:.2f}x time, "
        f"{cached_requests}/{fresh_requests} token requests"
    )


if __name__ == "__main__":
    asyncio.run(main())
