"""The installed ``criteo-proxy`` command, driven as a subprocess against the fake Criteo.

Everything listens on and talks to 127.0.0.1 only. The fake runs in the test's
event loop, so the command is always run with the async helpers of conftest.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from tests import conftest
from tests.conftest import (
    CliResult,
    CliServer,
    assert_absent,
    assert_one_line_error,
    clean_env,
    raw_request,
    run_cli,
)

StartCliServer = Callable[..., Awaitable[CliServer]]

API_PATH = "/2025-10/advertisers/me"
DEMO_ADVERTISER = {
    "data": [
        {"id": "12345", "type": "Advertiser", "attributes": {"advertiserName": "Demo advertiser"}}
    ],
    "errors": [],
    "warnings": [],
}


def demo_env(**extra: str) -> dict[str, str]:
    return clean_env(
        CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET, **extra
    )


def make_secret() -> str:
    return "s3cr3t-" + secrets.token_hex(16)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client, like curl: no proxies from the environment."""
    async with aiohttp.ClientSession() as session:
        yield session


def free_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


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


# --- check ------------------------------------------------------------------------------


async def test_check_prints_what_it_found_but_never_the_secret_or_the_token(
    criteo: FakeCriteo, criteo_url: str
) -> None:
    secret = make_secret()
    criteo.clients = {"e2e-client": secret}
    env = clean_env(CRITEO_CLIENT_ID="e2e-client", CRITEO_CLIENT_SECRET=secret)

    result = await run_cli("check", "--upstream", criteo_url, env=env)

    assert result.returncode == 0, result.stderr
    assert criteo_url in result.stdout
    assert "e2e-client" in result.stdout
    assert len(criteo.issued) == 1  # it really fetched a token
    assert "Traceback" not in result.stderr
    assert_absent({secret, *criteo.issued}, result.stdout, result.stderr)


async def test_check_with_a_wrong_secret_fails_with_one_line_and_no_traceback(
    criteo: FakeCriteo, criteo_url: str
) -> None:
    wrong = make_secret()
    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=wrong)

    result = await run_cli("check", "--upstream", criteo_url, env=env)

    assert_one_line_error(result, 1, "token_request_failed", "invalid_client")
    assert criteo.issued == {}
    assert_absent({wrong}, result.stdout, result.stderr)


# --- token ------------------------------------------------------------------------------


async def test_token_prints_the_access_token_and_nothing_else_on_stdout(
    criteo: FakeCriteo, criteo_url: str
) -> None:
    result = await run_cli("token", "--upstream", criteo_url, env=demo_env())

    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0] in criteo.issued
    assert list(criteo.issued) == [lines[0]]
    assert "Traceback" not in result.stderr
    assert lines[0] not in result.stderr  # logs go to stderr, the token never does


async def test_token_with_a_wrong_secret_fails_with_one_line_and_no_traceback(
    criteo: FakeCriteo, criteo_url: str
) -> None:
    wrong = make_secret()
    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=wrong)

    result = await run_cli("token", "--upstream", criteo_url, env=env)

    assert_one_line_error(result, 1, "token_request_failed", "invalid_client")
    assert result.stdout == ""
    assert_absent({wrong}, result.stdout, result.stderr)


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


# --- configuration errors through the real command -------------------------------------


@dataclass(frozen=True)
class ConfigErrorCase:
    """``{upstream}``, ``{config}``, ``{secret}`` and ``{port}`` are filled in."""

    args: tuple[str, ...]
    fragments: tuple[str, ...]  # each must appear in the one stderr line
    file_text: str | None = None
    credentials: bool = True  # CRITEO_CLIENT_ID / CRITEO_CLIENT_SECRET in the environment
    for_check: bool = True  # the case applies to `check` too


# The servers never get far enough to talk to anything, but are aimed at loopback anyway.
_SAFE = ("--upstream", "{upstream}", "--port", "0")

CONFIG_ERRORS = {
    "unknown-section": ConfigErrorCase(
        ("--config", "{config}", "--port", "0"),
        ("upstrem", "unknown key", "{config}"),
        file_text="upstrem:\n  url: {upstream}\ncredentials:\n  client_secret: {secret}\n",
    ),
    "unknown-nested-key": ConfigErrorCase(
        ("--config", "{config}", *_SAFE),
        ("upstream.respnse_timeout", "unknown key"),
        file_text="upstream:\n  respnse_timeout: 5\ncredentials:\n  client_secret: {secret}\n",
    ),
    "wrong-type": ConfigErrorCase(
        ("--config", "{config}", "--upstream", "{upstream}"),
        ("listen.port", "whole number"),
        file_text="listen:\n  port: eighty\n",
    ),
    "secret-of-wrong-type": ConfigErrorCase(
        ("--config", "{config}", *_SAFE),
        ("credentials.client_secret",),
        file_text="credentials:\n  client_secret: [{secret}]\n",
        credentials=False,
    ),
    "bad-upstream-url": ConfigErrorCase(
        ("--upstream", "api.criteo", "--port", "0"), ("upstream.url", "api.criteo")
    ),
    "origin-with-bad-punycode": ConfigErrorCase(
        ("--config", "{config}", *_SAFE),
        ("security.allowed_origins[0]", "xn--a.example"),
        file_text='security:\n  allowed_origins: ["https://xn--a.example"]\n',
    ),
    "upstream-with-bad-punycode": ConfigErrorCase(
        ("--upstream", "https://xn--a.example", "--port", "0"), ("upstream.url",)
    ),
    "missing-credentials": ConfigErrorCase(_SAFE, ("CRITEO_CLIENT_ID",), credentials=False),
    "missing-config-file": ConfigErrorCase(
        ("--config", "/nonexistent.yaml", *_SAFE), ("/nonexistent.yaml",)
    ),
    "invalid-yaml": ConfigErrorCase(
        ("--config", "{config}", *_SAFE),
        ("{config}", "YAML"),
        file_text="credentials:\n  client_secret: {secret}\nupstream: [unclosed\n",
    ),
    "port-in-use": ConfigErrorCase(
        ("--upstream", "{upstream}", "--port", "{port}"),
        ("{port}", "listen.port"),
        for_check=False,
    ),
    "port-not-a-number": ConfigErrorCase(("--upstream", "{upstream}", "--port", "abc"), ("abc",)),
    "unknown-log-format": ConfigErrorCase((*_SAFE, "--log-format", "xml"), ("xml",)),
}


async def run_config_error_case(
    case: ConfigErrorCase, subcommand: tuple[str, ...], criteo_url: str, tmp_path: Path
) -> tuple[CliResult, dict[str, str], str]:
    secret = make_secret()
    config_file = tmp_path / "criteo-proxy.yaml"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        fill = {
            "upstream": criteo_url,
            "config": str(config_file),
            "secret": secret,
            "port": str(busy.getsockname()[1]),
        }
        if case.file_text is not None:
            config_file.write_text(case.file_text.format(**fill), encoding="utf-8")
        credentials = {"CRITEO_CLIENT_ID": DEMO_CLIENT_ID, "CRITEO_CLIENT_SECRET": secret}
        env = clean_env(**(credentials if case.credentials else {}))
        result = await run_cli(*subcommand, *(a.format(**fill) for a in case.args), env=env)
    return result, fill, secret


@pytest.mark.parametrize("case", CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
async def test_run_config_error_exits_2_with_one_line_naming_the_key_or_file(
    case: ConfigErrorCase, criteo: FakeCriteo, criteo_url: str, tmp_path: Path
) -> None:
    result, fill, secret = await run_config_error_case(case, (), criteo_url, tmp_path)

    assert_one_line_error(result, 2, *(f.format(**fill) for f in case.fragments))
    assert "serving on" not in result.stdout
    assert_absent({secret}, result.stdout, result.stderr)
    assert criteo.requests == []


CHECK_CONFIG_ERRORS = {name: case for name, case in CONFIG_ERRORS.items() if case.for_check}


@pytest.mark.parametrize("case", CHECK_CONFIG_ERRORS.values(), ids=CHECK_CONFIG_ERRORS.keys())
async def test_check_config_error_exits_1_with_one_line_naming_the_key_or_file(
    case: ConfigErrorCase, criteo: FakeCriteo, criteo_url: str, tmp_path: Path
) -> None:
    result, fill, secret = await run_config_error_case(case, ("check",), criteo_url, tmp_path)

    assert_one_line_error(result, 1, *(f.format(**fill) for f in case.fragments))
    assert "OK" not in result.stdout.splitlines()
    assert_absent({secret}, result.stdout, result.stderr)
    assert criteo.token_requests == []


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


# --- logs -------------------------------------------------------------------------------


async def test_text_logs_escape_line_separators_a_client_sends(
    criteo_url: str, start_cli_server: StartCliServer
) -> None:
    """U+2028, U+0085 and friends split a line for many log viewers: a client must not
    be able to forge a log line with them, in the access line or in a warning."""
    server = await start_cli_server("--upstream", criteo_url, "--port", "0", env=demo_env())
    port = int(server.url.rsplit(":", 1)[1])
    forged = "\u2028\x852026-12-02T00:00:00.000Z INFO criteo_proxy.access: forged"
    for request in (
        # aiohttp refuses such bytes in the target itself (400, logged as malformed)
        f"GET /2025-10/echo/a\x1e{forged.replace(' ', '_')} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        f"GET /2025-10/echo/b HTTP/1.1\r\nHost: localhost\r\nOrigin: http://x{forged}\r\n\r\n",
        f"GET /2025-10/echo/c HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Site: {forged}\r\n\r\n",
        f"GET /2025-10/echo/d HTTP/1.1\r\nHost: {forged.replace(' ', '')}\r\n\r\n",
    ):
        answer = await raw_request(port, request.encode())
        assert answer.status in (400, 403)
    assert await server.stop() == 0
    text = server.stderr
    assert "forged" in text  # the lines are there...
    for separator in ("\u2028", "\x85", "\x1e"):
        assert separator not in text  # ...but cannot split
    assert "\\u2028" in text
    assert all(line[:4].isdigit() for line in text.split("\n") if line)


async def test_json_log_format_writes_only_json_objects_to_stderr(
    criteo_url: str, start_cli_server: StartCliServer, http: aiohttp.ClientSession
) -> None:
    server = await start_cli_server(
        "--upstream",
        criteo_url,
        "--port",
        "0",
        "--log-format",
        "json",
        "--log-level",
        "debug",
        env=demo_env(),
    )
    for path in (API_PATH, "/_proxy/nothing-here", "/2025-10/no-such-thing"):
        async with http.get(server.url + path) as resp:
            await resp.read()

    assert await server.stop() == 0
    assert server.stderr_lines  # at least the start-up token and the 404 warning
    for line in server.stderr_lines:
        assert isinstance(json.loads(line), dict), line
    # stdout too: in a container both streams end in the same log pipeline (DESIGN 5).
    assert server.stdout_lines
    for line in server.stdout_lines:
        entry = json.loads(line)
        assert isinstance(entry, dict), line
    [serving] = [json.loads(line) for line in server.stdout_lines]
    assert serving["event"] == "serving"
    assert serving["url"] == server.url
    assert serving["message"] == f"serving on {server.url}"
    assert serving["level"] == "info"


async def test_json_log_format_writes_a_start_failure_as_one_json_object(
    criteo_url: str,
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = await run_cli(
            "--upstream", criteo_url, "--port", port, "--log-format", "json", env=demo_env()
        )
    line = assert_one_line_error(result, 2, "listen.port", port)
    entry = json.loads(line)
    assert entry["level"] == "error"
    assert "listen.port" in entry["message"]
    assert result.stdout == ""


async def test_demo_keeps_printing_for_people_with_json_logs(
    start_cli_server: StartCliServer, http: aiohttp.ClientSession
) -> None:
    server = await start_cli_server("demo", "--port", "0", "--log-format", "json")
    assert await server.stop() == 0
    assert any(line.lstrip().startswith("curl ") for line in server.stdout_lines)
    for line in server.stderr_lines:
        assert isinstance(json.loads(line), dict), line


async def test_no_secret_or_token_leaks_through_a_whole_debug_session(
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    secret = make_secret()
    criteo.clients = {"leak-test": secret}
    env = clean_env(CRITEO_CLIENT_ID="leak-test", CRITEO_CLIENT_SECRET=secret)
    server = await start_cli_server(
        "--upstream", criteo_url, "--port", "0", "--log-level", "debug", env=env
    )
    seen: list[str] = []

    async def call(method: str, path: str, **kwargs: object) -> int:
        async with http.request(method, server.url + path, **kwargs) as resp:  # type: ignore[arg-type]
            seen.append(str(resp.headers))
            seen.append((await resp.read()).decode("utf-8", "replace"))
            return resp.status

    assert await call("GET", API_PATH) == 200
    assert await call("POST", "/2025-10/echo/x", data=b'{"a": 1}') == 200
    assert await call("GET", "/2025-10/no-such-thing") == 404
    assert await call("GET", "/_proxy/ready") == 200
    assert await call("GET", "/_proxy/nothing-here") == 404
    tokens = set(criteo.issued)
    fetches = len(criteo.token_requests)

    criteo.revoke_tokens()  # Criteo answers 401; the proxy fetches a new token and retries
    assert await call("GET", API_PATH, headers={"Authorization": "Bearer client-own"}) == 200
    assert len(criteo.token_requests) == fetches + 1
    tokens |= set(criteo.issued)

    criteo.revoke_tokens()  # now the token endpoint refuses: an error envelope is built
    criteo.token_failure_status = 401
    assert await call("GET", API_PATH) == 502
    assert await call("GET", "/_proxy/ready") == 503

    assert await server.stop() == 0
    tokens |= {seen_request.token for seen_request in criteo.requests if seen_request.token}
    assert len(tokens) >= 2
    assert_absent({secret, *tokens}, server.stdout, server.stderr, *seen)
    assert "Traceback" not in server.stderr


# --- help -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("--help",), ("check", "--help"), ("run", "--help"), ("token", "--help")]
)
async def test_help_exits_0_and_documents_the_flags(args: tuple[str, ...]) -> None:
    result = await run_cli(*args)

    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout
    assert "--upstream" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(("command", "status"), [(("check",), 1), (("run",), 2), ((), 2)])
async def test_an_unknown_flag_is_one_line_and_check_still_exits_1(
    command: tuple[str, ...], status: int
) -> None:
    result = await run_cli(*command, "--bogus")
    assert_one_line_error(result, status, "--bogus")


async def test_from_url_never_echoes_an_address_that_may_carry_the_code() -> None:
    result = await run_cli(
        "authorize",
        "--from-url",
        "callback?code=SECRETCODE123&state=x",
        env=clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET),
    )
    assert_one_line_error(result, 2, "--from-url")
    assert "SECRETCODE123" not in result.stderr + result.stdout


# --- the token cache of `criteo-proxy token` ---------------------------------------------------


def cache_file(private_cache: Path) -> Path:
    return private_cache / "criteo-proxy" / "token-default.json"


async def test_token_reuses_a_valid_token_from_its_own_0600_cache(
    criteo: FakeCriteo, criteo_url: str, private_cache: Path
) -> None:
    first = await run_cli("token", "--upstream", criteo_url, env=demo_env())
    second = await run_cli("token", "--upstream", criteo_url, env=demo_env())
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert len(criteo.token_requests) == 1
    path = cache_file(private_cache)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    entry = json.loads(path.read_text())
    assert entry["client_id"] == DEMO_CLIENT_ID
    assert entry["token_url"] == criteo_url + "/oauth2/token"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    assert DEMO_CLIENT_SECRET not in path.read_text()

    fresh = await run_cli("token", "--fresh", "--upstream", criteo_url, env=demo_env())
    assert fresh.returncode == 0
    assert fresh.stdout != first.stdout
    assert len(criteo.token_requests) == 2
    assert json.loads(path.read_text())["access_token"] == fresh.stdout.strip()


async def test_token_renews_once_the_cached_one_is_within_the_refresh_margin(
    criteo: FakeCriteo, criteo_url: str, private_cache: Path
) -> None:
    assert (await run_cli("token", "--upstream", criteo_url, env=demo_env())).returncode == 0
    path = cache_file(private_cache)
    entry = json.loads(path.read_text())
    entry["expires_at"] = time.time() + 59  # less than tokens.refresh_margin (60 s) left
    path.write_text(json.dumps(entry))
    again = await run_cli("token", "--upstream", criteo_url, env=demo_env())
    assert again.returncode == 0
    assert len(criteo.token_requests) == 2
    entry["expires_at"] = time.time() + 61
    entry["access_token"] = again.stdout.strip()
    path.write_text(json.dumps(entry))
    assert (await run_cli("token", "--upstream", criteo_url, env=demo_env())).returncode == 0
    assert len(criteo.token_requests) == 2


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"client_id": "someone-else", "token_url": "x", "access_token": "t", '
        '"expires_in": 900, "expires_at": 9999999999}',
        "\x00\xff",
    ],
    ids=["corrupt", "not-an-object", "foreign", "binary"],
)
async def test_a_corrupt_or_foreign_cache_file_is_ignored_and_replaced(
    criteo: FakeCriteo, criteo_url: str, private_cache: Path, content: str
) -> None:
    path = cache_file(private_cache)
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_text(content, encoding="latin-1")
    path.chmod(0o600)
    result = await run_cli("token", "--upstream", criteo_url, env=demo_env())
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() in criteo.issued
    assert json.loads(path.read_text())["access_token"] == result.stdout.strip()


async def test_a_cache_file_readable_by_others_is_not_trusted(
    criteo: FakeCriteo, criteo_url: str, private_cache: Path
) -> None:
    assert (await run_cli("token", "--upstream", criteo_url, env=demo_env())).returncode == 0
    path = cache_file(private_cache)
    path.chmod(0o644)
    assert (await run_cli("token", "--upstream", criteo_url, env=demo_env())).returncode == 0
    assert len(criteo.token_requests) == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_only_token_ever_prints_the_cached_token(
    criteo: FakeCriteo, criteo_url: str, start_cli_server: StartCliServer
) -> None:
    token = (await run_cli("token", "--upstream", criteo_url, env=demo_env())).stdout.strip()
    checked = await run_cli(
        "check", "--upstream", criteo_url, "--log-level", "debug", env=demo_env()
    )
    assert checked.returncode == 0
    server = await start_cli_server(
        "--upstream", criteo_url, "--port", "0", "--log-level", "debug", env=demo_env()
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + API_PATH) as resp:
            assert resp.status == 200
        async with http.get(server.url + "/_proxy/status") as resp:
            status_text = await resp.text()
    assert await server.stop() == 0
    assert_absent(
        {token}, checked.stdout, checked.stderr, server.stdout, server.stderr, status_text
    )
