"""The systemd user unit: it verifies, it is sandboxed, and its command line serves for real."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.config.schema import CredentialsConfig
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from tests import conftest
from tests.conftest import clean_env
from tests.deploy.conftest import READY_PATH, REPO

UNIT_FILE = REPO / "deploy" / "systemd" / "criteo-proxy.service"
CONFIG_ERROR_STATUS = 2  # DESIGN 1 / 3.4: a config error exits 2 with one line


# --- 6. the systemd user unit -----------------------------------------------------------


def read_unit() -> dict[str, list[str]]:
    """Key -> values in file order (a key may repeat: SystemCallFilter=)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT_FILE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key}", []).append(value)
    return values


UNIT = read_unit()


def exec_start(home: Path) -> list[str]:
    (line,) = UNIT["Service.ExecStart"]
    return shlex.split(line.replace("%h", str(home)))


def test_exec_start_is_where_the_units_install_steps_put_criteo_proxy() -> None:
    binary = exec_start(Path("~"))[0]
    comments = [line for line in UNIT_FILE.read_text(encoding="utf-8").splitlines() if "#" in line]
    (link,) = [line for line in comments if "ln -sf " in line]
    source, target = shlex.split(link.split("&&", 1)[1])[-2:]
    assert str(Path(target) / Path(source).name) == binary
    assert any("pipx install" in line and os.path.dirname(binary) in line for line in comments)


def installed_script() -> Path:
    script = shutil.which("criteo-proxy", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.fail("criteo-proxy is not installed next to this Python: pip install -e '.[dev]'")
    return Path(script)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home where criteo-proxy is installed as the unit's comment says (~/.local/bin)."""
    home = tmp_path / "home"
    binary = exec_start(home)[0]
    Path(binary).parent.mkdir(parents=True)
    Path(binary).symlink_to(installed_script())
    return home


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def systemd_analyze_verify(home: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "--user", "verify", str(UNIT_FILE)],
        env={**clean_env(), "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_the_user_unit_verifies_with_systemd_analyze(home: Path, tmp_path: Path) -> None:
    result = systemd_analyze_verify(home, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # not even a warning


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_does_fail_when_exec_start_is_not_installed(
    tmp_path: Path,
) -> None:
    """So the check above says something about ExecStart."""
    result = systemd_analyze_verify(tmp_path / "empty-home", tmp_path)
    assert result.returncode != 0
    assert "is not executable" in result.stderr


def test_the_unit_restarts_on_failure_but_not_on_a_config_error() -> None:
    assert UNIT["Service.Restart"] == ["on-failure"]
    assert UNIT["Service.RestartPreventExitStatus"] == [str(CONFIG_ERROR_STATUS)]
    assert UNIT["Install.WantedBy"] == ["default.target"]  # a user unit: the session's target


def test_the_sandbox_leaves_exactly_the_token_stores_directory_writable() -> None:
    assert UNIT["Service.ProtectSystem"] == ["strict"]
    assert UNIT["Service.ProtectHome"] == ["read-only"]
    # A user manager needs a user namespace for those (implied only from systemd 253 on).
    assert UNIT["Service.PrivateUsers"] == ["yes"]
    store_dir = os.path.dirname(CredentialsConfig().token_store).replace("~", "%h", 1)
    assert UNIT["Service.ReadWritePaths"] == [f"-{store_dir}"]
    config_path = exec_start(Path("%h"))[exec_start(Path("%h")).index("--config") + 1]
    assert os.path.dirname(config_path) == store_dir  # the secret file lives beside it
    assert UNIT["Service.UMask"] == ["0077"]


def size_bytes(value: str) -> int:
    """A systemd size (512M, 1G, or bytes) in bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if value[-1:].upper() in units:
        return int(value[:-1]) * units[value[-1].upper()]
    return int(value)


def test_memory_is_bounded_above_what_the_proxy_needs_and_throttled_before_the_kill() -> None:
    """Issue 20: a runaway (70 MB answers of /_proxy/requests were possible) ends at a
    bound, as the Kubernetes files' 256Mi limit does, not in the machine's OOM killer."""
    (memory_max,) = UNIT["Service.MemoryMax"]
    (memory_high,) = UNIT["Service.MemoryHigh"]
    # One process holds 50-56 MB; bodies buffered for the 401 retry take 10 MiB each.
    assert 128 << 20 <= size_bytes(memory_high) < size_bytes(memory_max) <= 512 << 20


async def test_the_units_command_line_serves_with_the_files_its_comment_installs(
    home: Path,
    criteo_url: str,
    start_cli_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ExecStart as systemd runs it (%h expanded), with the secret in a 0600 file."""
    command = exec_start(home)
    config_path = Path(command[command.index("--config") + 1])
    config_path.parent.mkdir(mode=0o700, parents=True)
    secret = config_path.parent / "client_secret"
    secret.write_text(DEMO_CLIENT_SECRET + "\n", encoding="utf-8")
    secret.chmod(0o600)
    config_path.write_text(
        f"listen: {{port: 0}}\nupstream: {{url: {criteo_url!r}}}\n"
        f"credentials:\n  client_id: {DEMO_CLIENT_ID}\n"
        "  client_secret_file: ~/.config/criteo-proxy/client_secret\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(conftest, "cli_command", list)  # COMMAND is the whole command line
    env = clean_env(HOME=str(home))

    server = await start_cli_server(*command, env=env)
    async with aiohttp.ClientSession() as http, http.get(server.url + READY_PATH) as resp:
        assert resp.status == 200, await resp.text()
    (timeout,) = UNIT["Service.TimeoutStopSec"]
    assert await server.stop(timeout=float(timeout)) == 0

    config_path.write_text("listen: {prot: 0}\n", encoding="utf-8")  # a typo
    result = await conftest.run_cli(*command, env=env)
    assert result.returncode == CONFIG_ERROR_STATUS, result.stderr
    assert "listen.prot" in result.stderr
