"""Logs of the installed command: forged line breaks escaped, JSON on both streams, no secrets."""

from __future__ import annotations

import json
import socket

import aiohttp

from proxy.fakes.criteo import FakeCriteo
from tests.cli.conftest import API_PATH, make_secret
from tests.conftest import (
    StartCliServer,
    assert_absent,
    assert_one_line_error,
    clean_env,
    demo_env,
    raw_request,
    run_cli,
)

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
        f"GET /2026-07/echo/a\x1e{forged.replace(' ', '_')} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        f"GET /2026-07/echo/b HTTP/1.1\r\nHost: localhost\r\nOrigin: http://x{forged}\r\n\r\n",
        f"GET /2026-07/echo/c HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Site: {forged}\r\n\r\n",
        f"GET /2026-07/echo/d HTTP/1.1\r\nHost: {forged.replace(' ', '')}\r\n\r\n",
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
    for path in (API_PATH, "/_proxy/nothing-here", "/2026-07/no-such-thing"):
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
    assert await call("POST", "/2026-07/echo/x", data=b'{"a": 1}') == 200
    assert await call("GET", "/2026-07/no-such-thing") == 404
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
