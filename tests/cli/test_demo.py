"""``criteo-proxy demo``: no credentials needed, and the curl line it prints works."""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from tests import conftest
from tests.cli.conftest import DEMO_ADVERTISER
from tests.conftest import clean_env

# --- demo -------------------------------------------------------------------------------


async def test_demo_needs_no_credentials_and_its_curl_line_works(
    http: aiohttp.ClientSession,
) -> None:
    env = clean_env()
    assert not any(name.startswith("CRITEO_") for name in env)
    process = await asyncio.create_subprocess_exec(
        *conftest.cli_command(),
        "demo",
        "--port",
        "0",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    stderr_task = asyncio.ensure_future(process.stderr.read()) if process.stderr else None
    try:
        printed: list[str] = []
        curl_line = ""
        async with asyncio.timeout(20):
            async for raw in process.stdout:
                printed.append(raw.decode().rstrip("\n"))
                if printed[-1].strip().startswith("curl "):
                    curl_line = printed[-1].strip()
                    break
        assert curl_line, printed
        serving = [line for line in printed if "serving on " in line]
        assert len(serving) == 1
        proxy_url = serving[0].split("serving on ", 1)[1].strip()
        assert URL(proxy_url).host == "127.0.0.1"
        assert URL(proxy_url).port not in (None, 0)

        # the line as a shell would run it: `curl URL`
        words = curl_line.split()
        assert words[0] == "curl"
        (target,) = words[1:]
        assert target.startswith(proxy_url + "/")
        async with http.get(target) as resp:
            assert resp.status == 200
            assert await resp.json() == DEMO_ADVERTISER
        for reserved in ("/_proxy/health", "/_proxy/ready"):
            async with http.get(proxy_url + reserved) as resp:
                assert resp.status == 200, reserved

        process.terminate()
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        stderr = (await stderr_task).decode() if stderr_task else ""
    assert "Traceback" not in stderr
