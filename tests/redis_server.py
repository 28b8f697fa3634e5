"""A real redis-server (Debian's package) on a free loopback port, started and stopped
by the tests by its PID: the fixtures ``shared_redis`` (one per session; tests keep
apart by ``key_prefix``), ``own_redis`` (a test's own, to stop and start) and
``redis_client``.

Without redis-server the tests that use them skip with one line naming the package;
``REDIS_TESTS=required`` (as CI sets) turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio

from tests.ports import free_port

REDIS_SERVER = shutil.which("redis-server")
REQUIRED = os.environ.get("REDIS_TESTS") == "required"


@dataclass
class RedisServer:
    """One redis-server process; stop() and start() again keep its port."""

    directory: Path
    port: int = field(default_factory=free_port)
    password: str | None = None
    extra_args: list[str] = field(default_factory=list)  # e.g. a TLS port, its files
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        _wait_until_listening(self.port, self.process)

    def stop(self) -> None:
        """Stopped by its PID, as a crash or an operator would."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def client(self) -> redis_asyncio.Redis:
        return redis_asyncio.Redis.from_url(self.url)


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(500):
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64):
                    return
        except OSError:
            pass
        time.sleep(0.01)  # a process starting up has no event to wait on
    raise RuntimeError("redis-server did not start listening")


def require_redis_server() -> None:
    if REDIS_SERVER is None:
        message = "redis-server is missing: apt-get install redis-server"
        if REQUIRED:
            pytest.fail(message + " (REDIS_TESTS=required)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by key prefix."""
    require_redis_server()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, to stop and start (not yet started)."""
    require_redis_server()
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    yield server
    server.stop()


@pytest.fixture
def key_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_client(shared_redis: RedisServer) -> AsyncIterator[redis_asyncio.Redis]:
    client = shared_redis.client()
    yield client
    await client.aclose()
