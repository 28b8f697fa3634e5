"""Graceful shutdown through the installed command: SIGTERM, the grace period, a second signal."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import CliServer, StartCliServer, demo_env, wait_for_line

ACCESS_LOGGER = "criteo_proxy.access"


CHUNK_BYTES = 4096
CHUNK_COUNT = 20


def port_of(server: CliServer) -> int:
    port = URL(server.url).port
    assert port is not None
    return port


async def assert_not_served(port: int) -> None:
    """A new connection is refused, reset or closed without an answer."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return
    try:
        writer.write(b"GET /_proxy/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:
        return
    finally:
        writer.close()
    assert not answer.startswith(b"HTTP/1.1 200"), answer


async def wait_for_stopping(server: CliServer) -> None:
    """The first signal has been handled: the server logs that it is stopping."""
    await wait_for_line(server.stderr_lines, lambda line: "stopping" in line)


async def wait_for_exit(server: CliServer, timeout: float) -> int:
    """Wait for the process to end by itself (server.stop() would signal it again)."""
    code = await asyncio.wait_for(server.process.wait(), timeout)
    await asyncio.gather(*server._drains)
    return code


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "criteo-proxy.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def hold_forever(criteo: FakeCriteo, path: str, release: asyncio.Event) -> None:
    """Criteo sends the headers and one chunk, then nothing until RELEASE."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        await resp.write(b"x" * CHUNK_BYTES)
        await release.wait()
        await resp.write_eof()
        return resp

    criteo.handlers[path] = handler


async def test_sigterm_lets_an_in_flight_download_finish_then_exits_0(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    chunks = [secrets.token_bytes(CHUNK_BYTES) for _ in range(CHUNK_COUNT)]
    release = asyncio.Event()

    async def slow_download(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        await resp.write(chunks[0])
        await release.wait()
        for chunk in chunks[1:]:
            await asyncio.sleep(0.02)  # the fake's pacing, not a test waiting
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    criteo.handlers["/2026-07/reports/big"] = slow_download
    server = await start_cli_server("--upstream", criteo_url, "--port", "0", env=demo_env())

    try:
        async with http.get(server.url + "/2026-07/reports/big") as resp:
            assert resp.status == 200
            first = await resp.content.readexactly(CHUNK_BYTES)
            server.process.terminate()
            await wait_for_stopping(server)

            await assert_not_served(port_of(server))
            assert server.process.returncode is None  # still serving the download

            release.set()
            rest = await resp.read()
    finally:
        release.set()

    body = first + rest
    assert len(body) == CHUNK_BYTES * CHUNK_COUNT
    assert hashlib.sha256(body).digest() == hashlib.sha256(b"".join(chunks)).digest()
    assert await wait_for_exit(server, 15) == 0
    assert "Traceback" not in server.stderr


async def test_second_signal_exits_at_once_without_waiting_for_the_grace(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    release = asyncio.Event()
    hold_forever(criteo, "/2026-07/reports/stuck", release)
    config = write_config(tmp_path, "listen:\n  shutdown_grace: 30\n")
    server = await start_cli_server(
        "--config", config, "--upstream", criteo_url, "--port", "0", env=demo_env()
    )

    try:
        async with http.get(server.url + "/2026-07/reports/stuck") as resp:
            assert resp.status == 200
            await resp.content.readexactly(CHUNK_BYTES)
            server.process.terminate()
            await wait_for_stopping(server)
            assert server.process.returncode is None  # the first signal waits for the download

            started = time.monotonic()
            server.process.terminate()
            code = await wait_for_exit(server, 10)
            elapsed = time.monotonic() - started
    finally:
        release.set()

    assert elapsed < 10
    assert code == 1  # os._exit(1): an interrupted shutdown is not a clean one
    assert "second signal" in server.stderr


async def start_stuck_download_then_sigterm(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    grace_seconds: float,
) -> tuple[int, float, CliServer]:
    """Serve with GRACE_SECONDS, hold a download open, SIGTERM: (status, seconds, server)."""
    release = asyncio.Event()
    hold_forever(criteo, "/2026-07/reports/stuck", release)
    config = write_config(tmp_path, f"listen:\n  shutdown_grace: {grace_seconds}\n")
    server = await start_cli_server(
        "--config", config, "--upstream", criteo_url, "--port", "0", env=demo_env()
    )
    try:
        async with http.get(
            server.url + "/2026-07/reports/stuck", headers={"X-Request-Id": "stuck-1"}
        ) as resp:
            assert resp.status == 200
            await resp.content.readexactly(CHUNK_BYTES)
            started = time.monotonic()
            server.process.terminate()
            code = await wait_for_exit(server, 30)
            elapsed = time.monotonic() - started
    finally:
        release.set()
    return code, elapsed, server


async def test_sigterm_with_a_download_that_never_ends_does_not_hang_and_exits_0(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    code, elapsed, server = await start_stuck_download_then_sigterm(
        criteo, criteo_url, start_cli_server, http, tmp_path, grace_seconds=1
    )

    assert code == 0, server.stderr
    assert elapsed < 10
    assert "Traceback" not in server.stderr


async def test_sigterm_waits_for_the_grace_period_but_not_longer(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """listen.shutdown_grace bounds the whole stop: a stuck download gets it once, not twice."""
    grace_seconds = 3
    code, elapsed, server = await start_stuck_download_then_sigterm(
        criteo, criteo_url, start_cli_server, http, tmp_path, grace_seconds=grace_seconds
    )

    assert code == 0, server.stderr
    assert elapsed >= grace_seconds - 0.5  # the in-flight download was given its grace
    assert elapsed < grace_seconds + 1.5, f"exited {elapsed:.1f} s after SIGTERM"


async def test_a_download_cut_by_shutdown_still_gets_its_access_line(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """One access line per request (§5), the one the shutdown had to cut off included."""
    code, _elapsed, server = await start_stuck_download_then_sigterm(
        criteo, criteo_url, start_cli_server, http, tmp_path, grace_seconds=1
    )

    assert code == 0, server.stderr
    access_lines = [line for line in server.stderr_lines if ACCESS_LOGGER in line]
    assert any("id=stuck-1" in line for line in access_lines), server.stderr
