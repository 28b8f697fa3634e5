"""Shared fixtures: the fake Criteo as a real server, the proxy as a real server in front.

Everything listens on 127.0.0.1; nothing here talks to any other address.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.config.loader import parse_config
from proxy.config.schema import Config
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from proxy.server.app import build_app
from proxy.server.listeners import ProxyRunner, build_server_options

# A real redis-server for the tests of DESIGN 11 (coordination, and the console showing it).
pytest_plugins = ["tests.redis_server"]


class ManualClock:
    """A clock that moves only when a test says so: expiry without sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every test's commands keep their token cache in a directory of their own."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def criteo(clock: ManualClock) -> FakeCriteo:
    """The fake's state: what it saw, and the knobs a test turns. Its clock is ``clock``."""
    return FakeCriteo(clock=clock)


@pytest.fixture
async def criteo_server(
    aiohttp_server: Callable[..., Awaitable[TestServer]], criteo: FakeCriteo
) -> TestServer:
    # The fake records the request bytes as they came on the wire, compressed or not.
    return await aiohttp_server(criteo.build_app(), auto_decompress=False)


@pytest.fixture
def criteo_url(criteo_server: TestServer) -> str:
    return str(criteo_server.make_url("")).rstrip("/")


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def make_config(criteo_url: str) -> Callable[..., Config]:
    """A validated Config aimed at the fake; keyword arguments are YAML sections."""

    def make(**sections: Mapping[str, Any]) -> Config:
        raw: dict[str, Any] = {
            "upstream": {"url": criteo_url},
            "credentials": {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET},
        }
        return parse_config(deep_merge(raw, sections), environ={})

    return make


class ProductionTestServer(TestServer):
    """A TestServer that serves with the proxy's own server options.

    aiohttp's TestServer imposes its own (handler_cancellation=True, no header
    timeout, aiohttp's default limits); the tests must see the server users run.
    """

    def __init__(self, app: web.Application, options: dict[str, Any]) -> None:
        super().__init__(app, host="127.0.0.1")
        self._options = options

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return ProxyRunner(self.app, **{**kwargs, **self._options})


StartProxy = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def start_proxy(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    make_config: Callable[..., Config],
) -> StartProxy:
    """Start the proxy as a real server on loopback; returns a client aimed at it.

    ``await start_proxy(upstream={"response_timeout": 0.5}, clock=clock)``.
    The test client decompresses bodies; use ``raw_request`` to see bytes.
    """

    async def start(
        config: Config | None = None, *, clock: Callable[[], float] | None = None, **sections: Any
    ) -> TestClient[Any, Any]:
        config = config or make_config(**sections)
        app = build_app(config, **({"clock": clock} if clock else {}))
        return await aiohttp_client(ProductionTestServer(app, build_server_options(config.listen)))

    return start


@pytest.fixture
async def proxy(start_proxy: StartProxy) -> TestClient[Any, Any]:
    return await start_proxy()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    header_lines: list[tuple[str, str]]
    body: bytes
    reason: str = ""  # the status line's reason phrase, as sent


async def raw_request(port: int, data: bytes, *, host: str = "127.0.0.1") -> RawResponse:
    """Send bytes as they are and read one HTTP/1.1 answer: for what a client library hides."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        return await read_raw_response(reader)
    finally:
        writer.close()


async def read_raw_response(reader: asyncio.StreamReader) -> RawResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    _, status_text, reason = [*lines[0].split(" ", 2), ""][:3]
    status = int(status_text)
    header_lines = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            header_lines.append((name.strip(), value.strip()))
    headers = {name.lower(): value for name, value in header_lines}
    if status in (204, 304) or 100 <= status < 200:
        body = b""
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    else:
        body = await reader.read()
    return RawResponse(status, headers, header_lines, body, reason)


# --- the installed command, as a subprocess --------------------------------------------


def cli_command() -> list[str]:
    """The installed ``criteo-proxy`` script (falls back to ``python -m proxy``)."""
    script = shutil.which("criteo-proxy", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "proxy"]


def demo_env(**extra: str) -> dict[str, str]:
    """clean_env with the fake's demo credentials, as a user's shell would have them."""
    return clean_env(
        CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET, **extra
    )


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without our variables or proxies, plus EXTRA."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CRITEO_") and k.lower() not in ("http_proxy", "https_proxy")
    }
    env.update(extra)
    return env


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> CliResult:
    """Run the command to completion without blocking the loop (the fake may be serving)."""
    process = await asyncio.create_subprocess_exec(
        *cli_command(),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env) if env is not None else clean_env(),
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


def assert_one_line_error(result: CliResult, status: int, *fragments: str) -> str:
    """Exit STATUS, exactly one line on stderr holding every FRAGMENT, no traceback."""
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def assert_absent(needles: set[str], *haystacks: str) -> None:
    """No NEEDLE (a secret, a token) appears in any HAYSTACK (output, bodies, logs)."""
    for needle in needles:
        assert needle
        for haystack in haystacks:
            assert needle not in haystack


def serving_url(line: str) -> str | None:
    """The address in a "serving on" line: text, or the JSON object of --log-format json."""
    if line.startswith("{"):
        entry = json.loads(line)
        return str(entry["url"]) if entry.get("event") == "serving" else None
    if "serving on " in line:
        return line.split("serving on ", 1)[1].strip()
    return None


async def wait_for_line(
    lines: list[str], predicate: Callable[[str], bool], timeout: float = 10
) -> str:
    """Wait for output (logs leave through a queue thread): poll the lines read so far."""
    async with asyncio.timeout(timeout):
        while True:
            for line in lines:
                if predicate(line):
                    return line
            await asyncio.sleep(0.02)


@dataclass
class CliServer:
    process: asyncio.subprocess.Process
    url: str
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    _drains: list[asyncio.Task[None]] = field(default_factory=list)
    _new_line: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for_output(self, ready: Callable[[], bool], timeout: float = 10) -> None:
        """Until READY() holds, woken by each line either stream prints."""
        async with asyncio.timeout(timeout):
            while not ready():
                self._new_line.clear()
                await self._new_line.wait()

    async def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then wait for exit; returns the exit status."""
        if self.process.returncode is None:
            self.process.terminate()
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.gather(*self._drains)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    @property
    def stdout(self) -> str:
        return "\n".join(self.stdout_lines)


StartCliServer = Callable[..., Awaitable[CliServer]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client, like curl: no proxies from the environment."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def start_cli_server() -> AsyncIterator[Callable[..., Awaitable[CliServer]]]:
    """Start ``criteo-proxy ... --port 0`` and wait until it prints where it serves."""
    servers: list[CliServer] = []

    async def start(*args: str, env: Mapping[str, str] | None = None) -> CliServer:
        process = await asyncio.create_subprocess_exec(
            *cli_command(),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else clean_env(),
        )
        assert process.stdout is not None
        assert process.stderr is not None
        server = CliServer(process, url="")

        async def drain(stream: asyncio.StreamReader, lines: list[str]) -> None:
            async for line in stream:
                lines.append(line.decode().rstrip("\n"))
                server._new_line.set()
            server._new_line.set()  # the end: a waiter learns that nothing more comes

        server._drains.append(asyncio.create_task(drain(process.stderr, server.stderr_lines)))
        servers.append(server)
        async with asyncio.timeout(20):
            async for raw in process.stdout:
                line = raw.decode().rstrip("\n")
                server.stdout_lines.append(line)
                url = serving_url(line)
                if url:
                    server.url = url
                    break
        if not server.url:
            await server.stop()
            raise AssertionError(f"criteo-proxy did not start: {server.stderr}")
        server._drains.append(asyncio.create_task(drain(process.stdout, server.stdout_lines)))
        return server

    yield start
    for server in servers:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()
        await asyncio.gather(*server._drains, return_exceptions=True)
