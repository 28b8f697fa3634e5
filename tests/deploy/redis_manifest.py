"""redis.yaml's Redis run for real, as its container runs it: the ConfigMap's start.sh and
valkey.conf, the password Secret's file, the emptyDir and the claim, each mount a
directory of the test's own, and Debian's redis-server standing in for valkey-server
(Valkey is the fork of Redis 7.2: same configuration, same protocol), on a free loopback
port. conftest's fixture ``manifest_redis`` starts one and stops it by its PID.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import load_manifest, pod_spec
from tests.redis_server import REDIS_SERVER, free_port

REDIS_MANIFEST = "redis.yaml"
REDIS_CLI = shutil.which("redis-cli")


def redis_documents() -> dict[str, dict[str, Any]]:
    """redis.yaml's documents by kind (one of each)."""
    return {doc["kind"]: doc for doc in load_manifest(REDIS_MANIFEST)}


def redis_container() -> dict[str, Any]:
    (container,) = pod_spec(redis_documents()["StatefulSet"])["containers"]
    return container


def redis_volumes() -> dict[str, dict[str, Any]]:
    """The pod's volumes and the claim templates, by name."""
    statefulset = redis_documents()["StatefulSet"]
    volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
    for template in statefulset["spec"].get("volumeClaimTemplates", []):
        name = template["metadata"]["name"]
        volumes[name] = {"name": name, "persistentVolumeClaim": {"claimName": name}}
    return volumes


@dataclass
class ManifestRedis:
    """The running server, and the container's paths as directories under ROOT."""

    root: Path
    password: str = field(default_factory=lambda: secrets.token_hex(32))
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    output: list[str] = field(default_factory=list)
    _drain: asyncio.Task[None] | None = None

    @property
    def mounts(self) -> dict[str, Path]:
        """Each mountPath of the container -> the directory that stands for it."""
        return {
            mount["mountPath"]: self.root / mount["name"]
            for mount in redis_container()["volumeMounts"]
        }

    def local(self, text: str) -> str:
        """TEXT with every container path in it replaced by the test's directory (one
        pass: a path must start where a word does and end where a path component does)."""
        mounts = self.mounts
        names = "|".join(re.escape(path) for path in sorted(mounts, key=len, reverse=True))
        pattern = rf"(?<![\w/.-])({names})(?=/|\s|$|\")"
        return re.sub(pattern, lambda match: str(mounts[match.group(1)]), text)

    def path(self, container_path: str) -> Path:
        return Path(self.local(container_path))

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def write_files(self, password_file_text: str | None = None) -> None:
        """Fill the mounts as the kubelet would: the ConfigMap, the Secret, empty dirs."""
        volumes = redis_volumes()
        config_map = redis_documents()["ConfigMap"]
        for directory in self.mounts.values():
            directory.mkdir(parents=True, exist_ok=True)
            volume = volumes[directory.name]
            if "configMap" in volume:
                for name, text in config_map["data"].items():
                    (directory / name).write_text(self.local(text), encoding="utf-8")
            elif "secret" in volume:
                for item in volume["secret"]["items"]:
                    assert item["key"] == "password"
                    text = self.password if password_file_text is None else password_file_text
                    (directory / item["path"]).write_text(text, encoding="utf-8")
        self.bin.mkdir(exist_ok=True)
        for name, real in (("valkey-server", REDIS_SERVER), ("valkey-cli", REDIS_CLI)):
            assert real is not None
            if not (self.bin / name).exists():
                (self.bin / name).symlink_to(real)

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self) -> dict[str, str]:
        """A container's bare environment: a PATH where valkey-* are Debian's redis-*."""
        return {"PATH": f"{self.bin}:/usr/bin:/bin", "LC_ALL": "C.UTF-8"}

    def command(self) -> list[str]:
        """The container's command, on this machine, on loopback and a free port."""
        shell, script = redis_container()["command"]
        assert shell == "/bin/sh"
        return ["/bin/sh", self.local(script), "--port", str(self.port), "--bind", "127.0.0.1"]

    async def start(self) -> None:
        """Start and wait for the server's own "Ready to accept connections" line."""
        self.process = await asyncio.create_subprocess_exec(
            *self.command(),
            env=self.env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        while line := (await self.process.stdout.readline()).decode():
            self.output.append(line)
            if "Ready to accept connections" in line:
                self._drain = asyncio.create_task(self._read_rest())
                return
        await self.process.wait()
        raise AssertionError(f"redis.yaml's Redis did not start: {''.join(self.output)}")

    async def _read_rest(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        while line := (await self.process.stdout.readline()).decode():
            self.output.append(line)

    async def run_to_exit(self) -> tuple[int, str]:
        """Run the command expecting it to stop by itself: (exit status, its output)."""
        process = await asyncio.create_subprocess_exec(
            *self.command(),
            env=self.env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode is not None
        return process.returncode, output.decode()

    async def stop(self) -> None:
        """By its PID: SIGTERM, as the kubelet sends it."""
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 30)
        if self._drain is not None:
            await self._drain
        self.process = None


def require_redis_binaries() -> None:
    if REDIS_SERVER is None or REDIS_CLI is None:
        message = "redis-server is missing: apt-get install redis-server"
        if os.environ.get("REDIS_TESTS") == "required":
            pytest.fail(message + " (REDIS_TESTS=required)")
        pytest.skip(message)


@asynccontextmanager
async def started_manifest_redis(tmp_path: Path) -> AsyncIterator[ManifestRedis]:
    """redis.yaml's Redis, started, with a password of hex digits in its Secret (as
    `openssl rand -hex 32` makes)."""
    require_redis_binaries()
    server = ManifestRedis(tmp_path / "redis-container")
    server.write_files()
    await server.start()
    yield server
    await server.stop()
