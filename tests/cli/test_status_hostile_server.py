"""``criteo-proxy status`` against a server that is not the proxy it expects (issue 20, 9).

A fake server on loopback answers ``/_proxy/status`` and ``/_proxy/requests`` with
whatever a test puts there: terminal escapes in every string, odd JSON shapes,
redirects. The command never lets a control character reach the terminal, never
follows a redirect with the inbound key, and ends with exit 0, or 1 and one line.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.cli.status_client import StatusTarget, StatusUnavailable, fetch_status
from proxy.cli.status_report import render_report
from tests.conftest import CliResult, clean_env, run_cli

ESCAPES = (
    "\x1b[31mred\x1b[0m \x1b]0;pwned\x07 \x1b]8;;http://evil.example\x1b\\link\x9b2J\x08\r\n\u2028"
)


@dataclass
class HostileServer:
    """What it answers (status, body bytes, headers) per path, and what it was sent."""

    answers: dict[str, tuple[int, bytes, dict[str, str]]] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def answer_json(self, path: str, document: object, status: int = 200) -> None:
        body = json.dumps(document).encode()
        self.answers[path] = (status, body, {"Content-Type": "application/json"})

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.path_qs, dict(request.headers)))
        status, body, headers = self.answers.get(request.path, (404, b"", {}))
        return web.Response(status=status, body=body, headers=headers)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


@pytest.fixture
async def hostile(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> tuple[HostileServer, str]:
    server = HostileServer()
    running = await aiohttp_server(server.build_app())
    return server, str(running.make_url("")).rstrip("/")


def assert_terminal_safe(result: CliResult) -> None:
    """No control character but the line breaks between lines; exit 0, or 1 and one line."""
    for stream in (result.stdout, result.stderr):
        raw = [c for c in stream if not c.isprintable() and c != "\n"]
        assert raw == [], (raw, stream[:2000])
    assert "Traceback" not in result.stderr
    assert "unexpected error" not in result.stderr, result.stderr
    if result.returncode == 0:
        assert result.stdout
    else:
        assert result.returncode == 1, result
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stdout == ""


def hostile_status(text: str) -> dict[str, Any]:
    return {
        "version": text,
        "uptime_seconds": text,
        "upstream": text,
        "console": {"history": 200, "error_bodies": True, "last_seq": 1},
        "profiles": [
            {
                "name": text,
                "listen": text,
                "token": {
                    "grant_type": text,
                    "client_id": text,
                    "state": text,
                    "expires_in_seconds": text,
                    "last_error": text,
                    "backoff_seconds": text,
                },
                "rate_limits": [{"bucket": text, "limit": text, "remaining": text}],
                "versions": [{"version": text, "requests": text, "sunset": text}],
            }
        ],
    }


def hostile_record(text: str) -> dict[str, Any]:
    return {
        "seq": 1,
        "time": text,
        "profile": text,
        "method": text,
        "path": text,
        "status": text,
        "duration_ms": text,
        "retried": text,
        "request_id": text,
        "proxy_error": text,
    }


async def test_every_string_a_server_sends_is_escaped_before_it_reaches_the_terminal(
    hostile: tuple[HostileServer, str],
) -> None:
    server, url = hostile
    server.answer_json("/_proxy/status", hostile_status(ESCAPES))
    server.answer_json("/_proxy/requests", {"requests": [hostile_record(ESCAPES)]})

    result = await run_cli("status", "--url", url, env=clean_env())

    assert result.returncode == 0, result.stderr
    assert_terminal_safe(result)
    assert "\\x1b[31mred" in result.stdout  # shown, escaped
    first = result.stdout.splitlines()[0]
    assert first.startswith("criteo-proxy \\x1b[31mred")


async def test_a_refusals_code_and_detail_are_escaped_in_its_one_line(
    hostile: tuple[HostileServer, str],
) -> None:
    server, url = hostile
    error = {"errors": [{"code": ESCAPES, "detail": ESCAPES}]}
    server.answer_json("/_proxy/status", error, status=401)

    result = await run_cli("status", "--url", url, env=clean_env())

    assert result.returncode == 1
    assert_terminal_safe(result)
    assert "401" in result.stderr


async def test_a_redirect_is_never_followed_with_the_inbound_key(
    hostile: tuple[HostileServer, str],
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    tmp_path: Path,
) -> None:
    server, url = hostile
    elsewhere = HostileServer()
    elsewhere.answer_json("/_proxy/status", hostile_status("elsewhere"))
    elsewhere.answer_json("/_proxy/requests", {"requests": []})
    other = await aiohttp_server(elsewhere.build_app())
    # Another host: "localhost" is not "127.0.0.1" to a client, though both are loopback.
    target = f"http://localhost:{other.port}/_proxy/status"
    server.answers["/_proxy/status"] = (302, b"", {"Location": target})
    config = tmp_path / "proxy.yaml"
    config.write_text(json.dumps({"security": {"api_keys": ["k-redirect-1"]}}))

    result = await run_cli("status", "--config", str(config), "--url", url, env=clean_env())

    assert [headers.get("X-Proxy-Key") for _, headers in server.seen] == ["k-redirect-1"]
    assert elsewhere.seen == []  # not followed at all
    assert result.returncode == 1
    assert_terminal_safe(result)
    assert "302" in result.stderr
    assert "k-redirect-1" not in result.stderr


@pytest.mark.parametrize(
    ("status_body", "requests_body"),
    [
        (b"[" * 100_000, b"{}"),  # nested past the recursion limit
        (b'{"version": ' + b"9" * 5000 + b"}", b"{}"),  # past int()'s digit limit
        (json.dumps({"profiles": 5, "version": None}).encode(), b'{"requests": 7}'),
        (
            json.dumps({"profiles": [{"rate_limits": 5, "versions": "ab", "token": []}]}).encode(),
            b'{"requests": [1, "x", null]}',
        ),
        (
            json.dumps(
                {"profiles": [{"name": {"a": [ESCAPES]}, "token": {"state": [ESCAPES]}}]}
            ).encode(),
            b'{"requests": [{"path": 5, "time": []}]}',
        ),
        (b"\xff\xfe not json", b"{}"),
        (
            json.dumps({"console": {"last_seq": "\x1b"}, "profiles": []}).encode(),
            b'{"requests": []}',
        ),
    ],
    ids=["deep", "huge-int", "wrong-types", "wrong-items", "nested-escapes", "not-json", "bad-seq"],
)
async def test_odd_json_shapes_end_in_a_report_or_one_line_never_a_traceback(
    hostile: tuple[HostileServer, str], status_body: bytes, requests_body: bytes
) -> None:
    server, url = hostile
    server.answers["/_proxy/status"] = (200, status_body, {"Content-Type": "application/json"})
    server.answers["/_proxy/requests"] = (200, requests_body, {"Content-Type": "application/json"})

    result = await run_cli("status", "--url", url, env=clean_env())

    assert_terminal_safe(result)


# --- the property: whatever the server answers ----------------------------------------------

NASTY_TEXT = st.sampled_from(
    [ESCAPES, "\x1b", "\x07", "\x9b", "\r", "\n", "\u2028", "\u202e", "\x00", "\ud800", "é"]
)
TEXT = st.text(max_size=30) | NASTY_TEXT | st.sampled_from(["\x1b", "é"]).map(lambda c: c * 3000)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**301)
    | st.floats()
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def shaped(keys: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with the keys the command reads (some of them), each an arbitrary value."""
    return st.fixed_dictionaries({}, optional={key: values for key in keys})


PROFILE = shaped(["name", "listen"], JSON) | st.fixed_dictionaries(
    {
        "name": JSON,
        "listen": JSON,
        "token": shaped(
            [
                "state",
                "grant_type",
                "client_id",
                "expires_in_seconds",
                "backoff_seconds",
                "last_error",
            ],
            JSON,
        )
        | JSON,
        "rate_limits": st.lists(
            shaped(["bucket", "limit", "remaining", "waiting", "seen_429"], JSON)
        )
        | JSON,
        "versions": st.lists(shaped(["version", "requests", "deprecated", "sunset"], JSON)) | JSON,
    }
)
STATUS = (
    st.fixed_dictionaries(
        {
            "version": JSON,
            "uptime_seconds": JSON,
            "upstream": JSON,
            "console": shaped(["last_seq"], JSON) | JSON,
            "profiles": st.lists(PROFILE, max_size=2) | JSON,
        }
    )
    | JSON
)
RECORD = shaped(
    [
        "seq",
        "time",
        "profile",
        "method",
        "path",
        "status",
        "duration_ms",
        "retried",
        "request_id",
        "proxy_error",
        "criteo_trace_id",
    ],
    JSON,
)
REQUESTS = st.fixed_dictionaries({"requests": st.lists(RECORD, max_size=3) | JSON}) | JSON
ERROR = st.fixed_dictionaries(
    {"errors": st.lists(shaped(["code", "detail"], JSON), max_size=2) | JSON}
)


def encoded(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return (
        documents.map(lambda d: json.dumps(d).encode())
        | st.binary(max_size=50)
        | st.just(b"[" * 2000)
    )


ANSWER = st.one_of(
    st.tuples(st.just(200), encoded(STATUS)),
    st.tuples(st.sampled_from([401, 403, 404, 500, 503]), encoded(ERROR)),
    st.tuples(st.sampled_from([301, 302, 307]), st.just(b"")),
)


def answer_with(server: HostileServer, path: str, answer: tuple[int, bytes]) -> None:
    status, body = answer
    headers = {"Content-Type": "application/json"}
    if 300 <= status < 400:
        headers["Location"] = "http://localhost:9/_proxy/status"  # never followed: nothing there
    server.answers[path] = (status, body, headers)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(status=ANSWER, requests=st.tuples(st.just(200), encoded(REQUESTS)) | ANSWER)
async def test_any_answer_gives_a_report_or_one_line_with_no_control_character(
    hostile: tuple[HostileServer, str], status: tuple[int, bytes], requests: tuple[int, bytes]
) -> None:
    """In process (fast, many examples): what the command prints, from what it fetched."""
    server, url = hostile
    answer_with(server, "/_proxy/status", status)
    answer_with(server, "/_proxy/requests", requests)
    try:
        # A blocking client (http.client): in a thread, so that the server in this loop answers.
        report = await asyncio.to_thread(fetch_status, StatusTarget(base_url=url))
    except StatusUnavailable as exc:
        lines = [str(exc)]
    else:
        lines = render_report(report)
        lines += json.dumps(report.status, indent=2).splitlines()  # --json
    for line in lines:
        assert line.isprintable(), line[:500]


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(status=ANSWER, requests=st.tuples(st.just(200), encoded(REQUESTS)) | ANSWER)
async def test_the_installed_command_against_any_answer_exits_0_or_1_with_one_line(
    hostile: tuple[HostileServer, str], status: tuple[int, bytes], requests: tuple[int, bytes]
) -> None:
    """The installed command itself (a few examples: each starts a Python)."""
    server, url = hostile
    answer_with(server, "/_proxy/status", status)
    answer_with(server, "/_proxy/requests", requests)
    for extra in ((), ("--json",)):
        assert_terminal_safe(await run_cli("status", "--url", url, *extra, env=clean_env()))
