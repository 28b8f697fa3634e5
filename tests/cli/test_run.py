"""``criteo-proxy run``: each form of the command line serves and stops; it starts with no token."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from proxy.fakes.criteo import FakeCriteo
from tests import conftest
from tests.cli.conftest import API_PATH, DEMO_ADVERTISER
from tests.conftest import StartCliServer, demo_env
from tests.ports import free_port

# --- run: the forms of the command line ------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """How the server is started; ``{upstream}`` and ``{config}`` are filled in."""

    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    as_module: bool = False  # ``python -m proxy`` instead of the console script


CONFIG_FILE_TEXT = "upstream:\n  url: {upstream}\nlisten:\n  port: 0\n"

INVOCATIONS = {
    "flags-without-run": Invocation(("--upstream", "{upstream}", "--port", "0")),
    "run-then-flags": Invocation(("run", "--upstream", "{upstream}", "--port", "0")),
    "python-m-proxy": Invocation(("--upstream", "{upstream}", "--port", "0"), as_module=True),
    "python-m-proxy-run": Invocation(
        ("run", "--upstream", "{upstream}", "--port", "0"), as_module=True
    ),
    "config-flag": Invocation(("--config", "{config}")),
    "run-config-flag": Invocation(("run", "--config", "{config}")),
    "config-env-var": Invocation((), env={"CRITEO_PROXY_CONFIG": "{config}"}),
}


@pytest.mark.parametrize("invocation", INVOCATIONS.values(), ids=INVOCATIONS.keys())
async def test_run_serves_on_the_bound_port_adds_the_token_and_stops_cleanly_on_sigterm(
    invocation: Invocation,
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config_file = tmp_path / "criteo-proxy.yaml"
    config_file.write_text(CONFIG_FILE_TEXT.format(upstream=criteo_url), encoding="utf-8")
    fill = {"upstream": criteo_url, "config": str(config_file)}
    if invocation.as_module:
        monkeypatch.setattr(conftest, "cli_command", lambda: [sys.executable, "-m", "proxy"])
        # the fixture must see the patch, or this would quietly test the script again
        assert start_cli_server.__globals__["cli_command"]() == [sys.executable, "-m", "proxy"]
    env = demo_env(**{k: v.format(**fill) for k, v in invocation.env.items()})

    server = await start_cli_server(*(a.format(**fill) for a in invocation.args), env=env)

    bound = URL(server.url)
    assert bound.host == "127.0.0.1"
    assert bound.port not in (None, 0, 8080)  # the port actually bound, not the one asked
    async with http.get(server.url + API_PATH) as resp:
        assert resp.status == 200
        assert await resp.json() == DEMO_ADVERTISER
    assert criteo.last_request.raw_path == API_PATH
    assert criteo.last_request.headers["Authorization"] == f"Bearer {criteo.last_request.token}"
    assert criteo.last_request.token in criteo.issued
    assert await server.stop() == 0
    assert "Traceback" not in server.stderr


# --- the token endpoint down at start ---------------------------------------------------


async def test_server_starts_when_the_token_endpoint_is_down_and_says_so(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/oauth2/token"
    server = await start_cli_server(
        "--upstream", criteo_url, "--token-url", closed, "--port", "0", env=demo_env()
    )

    async with http.get(server.url + "/_proxy/health") as resp:
        assert resp.status == 200
    async with http.get(server.url + "/_proxy/ready") as resp:
        assert resp.status == 503
        assert (await resp.json())["code"] == "token_endpoint_unavailable"
    async with http.get(server.url + API_PATH) as resp:
        assert resp.status == 502
        assert resp.headers["X-Criteo-Proxy-Error"] == "token_endpoint_unavailable"
        assert resp.content_type == "application/json"
        (error,) = (await resp.json())["errors"]
        assert error["type"] == "proxy"
        assert error["code"] == "token_endpoint_unavailable"
        assert error["traceId"] == resp.headers["X-Request-Id"]
    assert criteo.requests == []  # nothing forwarded without a token

    assert await server.stop() == 0
    warnings = [
        line for line in server.stderr_lines if "WARNING" in line and "token" in line.lower()
    ]
    assert warnings, server.stderr
    assert "Traceback" not in server.stderr
