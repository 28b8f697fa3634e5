"""``criteo-proxy demo``: no credentials needed; the curl line it prints works, under the
live API version; it shows where the console is; a taken port 8080 is no dead end."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import aiohttp
import pytest
from yarl import URL

from proxy.fakes.criteo import LIVE_API_VERSION
from tests import conftest
from tests.cli.conftest import DEMO_ADVERTISER
from tests.conftest import StartCliServer, assert_one_line_error, clean_env, run_cli

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
        assert target == f"{proxy_url}/{LIVE_API_VERSION}/advertisers/me"
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


async def test_demo_prints_the_consoles_address(
    start_cli_server: StartCliServer, http: aiohttp.ClientSession
) -> None:
    demo = await start_cli_server("demo", "--port", "0")
    console = f"{demo.url}/_proxy/"
    await demo.wait_for_output(lambda: console in demo.stdout)
    (line,) = [line for line in demo.stdout_lines if console in line]
    assert line.split()[-1] == console  # the last word: a terminal makes it a link
    async with http.get(console) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
    assert await demo.stop() == 0


@contextlib.contextmanager
def port_8080_taken() -> Iterator[None]:
    """Port 8080 on 127.0.0.1 is in use while inside: by us, or already by someone else."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 8080))
        sock.listen()
    except OSError:
        pass  # taken already: what we need
    try:
        yield
    finally:
        sock.close()


async def test_demo_serves_on_a_free_port_when_8080_is_taken_and_says_so(
    start_cli_server: StartCliServer, http: aiohttp.ClientSession
) -> None:
    with port_8080_taken():
        demo = await start_cli_server("demo")
        port = URL(demo.url).port
        assert port not in (None, 0, 8080)
        await demo.wait_for_output(lambda: "curl " in demo.stdout)
        said = [line for line in demo.stdout_lines if "8080" in line and "in use" in line]
        assert said, demo.stdout
        assert f"demo: port 8080 is in use: serving on port {port} instead" in said[0]
        async with http.get(f"{demo.url}/{LIVE_API_VERSION}/advertisers/me") as resp:
            assert resp.status == 200
        assert await demo.stop() == 0


async def test_demo_on_a_taken_port_given_with_port_is_the_usual_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await run_cli("demo", "--port", str(port))
    assert_one_line_error(result, 2, f"listen.port: cannot listen on 127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "content_type"),
    [
        ("GET", "marketing-solutions/me", None, 200, "application/json"),
        ("POST", "statistics/report", {"format": "csv"}, 200, "text/csv"),
        ("POST", "statistics/report", {"format": "json"}, 200, "application/json"),
        ("GET", "campaigns/123", None, 404, "application/json"),
    ],
)
async def test_demos_fake_answers_the_readmes_examples(
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: dict[str, str] | None,
    status: int,
    content_type: str,
) -> None:
    demo = await start_cli_server("demo", "--port", "0")
    report = {"advertiserIds": "12345", "startDate": "2026-11-01", "endDate": "2026-11-07"}
    payload = None if body is None else {**report, **body}
    url = f"{demo.url}/{LIVE_API_VERSION}/{path}"
    async with http.request(method, url, json=payload) as resp:
        assert resp.status == status
        assert resp.content_type == content_type
        if status == 404:
            assert (await resp.json())["errors"][0]["code"] == "resource-not-found"
    assert await demo.stop() == 0
