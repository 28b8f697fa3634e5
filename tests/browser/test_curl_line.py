"""The console's "copy as curl" line is safe to paste, whatever the request held (issue 20, 5).

Every word of the line that comes from a request (method, path, a header, the
socket) is quoted for a POSIX shell: pasted into ``sh``, it runs curl with those
words as literal arguments, and nothing else. The real test replays a hostile
request through the pure-Python HTTP parser (``AIOHTTP_NO_EXTENSIONS=1``, which
takes any token as a method, as a platform without the C parser does); the table
test runs the page's own function on hostile values, with a fake ``curl`` that
only writes down its arguments.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from tests.browser.conftest import (
    LIVE_MS,
    ROWS,
    StartCliServer,
    Tab,
    async_api,
    open_console,
)
from tests.conftest import CliServer, clean_env, demo_env, raw_request


class RecordingUpstream:
    """An upstream on loopback that writes down each request line as it came, and
    answers 200: a harmless target for a replayed request."""

    def __init__(self) -> None:
        self.request_lines: list[bytes] = []
        self.arrived = asyncio.Event()
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> RecordingUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.request_lines.append(head.split(b"\r\n", 1)[0])
                self.arrived.set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def run_in_shell(line: str, *, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """The line as a user pastes it into a POSIX shell."""
    process = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        line,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_the_curl_line_of_a_hostile_method_and_path_runs_curl_and_nothing_else(
    tab: Tab, criteo_url: str, start_cli_server: StartCliServer, tmp_path: Path
) -> None:
    upstream = await RecordingUpstream().start()
    try:
        proxy = await start_cli_server(
            "--upstream",
            upstream.url,
            "--token-url",
            criteo_url + "/oauth2/token",
            "--port",
            "0",
            env=demo_env() | {"AIOHTTP_NO_EXTENSIONS": "1"},  # any token as a method
        )
        planted = tmp_path / "pwned"
        method = "X'"
        path = f"/2026-07/x;touch$IFS{planted};#"
        port = URL(proxy.url).port
        assert port is not None
        sent = await raw_request(
            port,
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(),
        )
        assert sent.status == 200
        # As sent, but the fragment, which the proxy drops (curl drops it too).
        forwarded = f"{method} {path.removesuffix('#')} HTTP/1.1".encode()
        assert upstream.request_lines == [forwarded]

        await open_console(tab, proxy)
        row = tab.page.locator(ROWS)
        await async_api.expect(row).to_have_count(1, timeout=LIVE_MS)
        await async_api.expect(row.locator("td.path")).to_have_text(path)
        await row.click()
        line = await tab.page.locator("#detail-curl").inner_text()

        code, output = await run_in_shell(line, cwd=tmp_path, env=clean_env())

        assert not planted.exists(), (line, output)
        assert code == 0, (line, output)
        # curl sent the method and the path as they were: literal words, no shell.
        assert upstream.request_lines == [forwarded, forwarded]
    finally:
        await upstream.close()


# --- the table: hostile words, the page's own function, a fake curl -------------------------

PLANTED = "PLANTED"  # replaced by a file in the test's directory


def hostile(text: str) -> list[str]:
    """Ways a command hides in a word; each would create PLANTED if the shell ran it."""
    return [
        f"X'; touch {text}; '",
        f"$(touch {text})",
        f"`touch {text}`",
        f'X"; touch {text}; "',
        f"X;touch$IFS{text};#",
        f"X|touch {text}",
        f"X&&touch {text}",
        f"X\ntouch {text}",
        f"'\"$(touch {text})\"'",
        f"X\\'; touch {text} #",
    ]


RECORD = {
    "seq": 1,
    "time": "2026-12-02T09:44:18.203Z",
    "profile": "default",
    "method": "GET",
    "path": "/2026-07/x",
    "status": 200,
}
FAKE_CURL = """#!{python}
import json, os, sys
with open(os.environ["CURL_ARGV"], "a") as out:
    out.write(json.dumps(sys.argv[1:]) + "\\n")
"""


@pytest.fixture
def fake_curl(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A `curl` first on PATH that writes its arguments down (one JSON list a line)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    curl = bin_dir / "curl"
    curl.write_text(FAKE_CURL.format(python=sys.executable))
    curl.chmod(0o755)
    argv_file = tmp_path / "argv.jsonl"
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", CURL_ARGV=str(argv_file))
    return env, argv_file


async def curl_lines(tab: Tab, records: list[dict[str, Any]], socket: str | None) -> list[str]:
    """curlFor(record) in the page, with the profile on SOCKET (unix:) if given."""
    return list(
        await tab.page.evaluate(
            """([records, socket]) => {
              const saved = state.status;
              if (socket !== null) {
                state.status = { profiles: [{ name: "default", listen: `unix:${socket}` }] };
              }
              try {
                return records.map(curlFor);
              } finally {
                state.status = saved;
              }
            }""",
            [records, socket],
        )
    )


async def test_every_word_of_the_curl_line_is_quoted_whatever_it_holds(
    tab: Tab, proxy: CliServer, tmp_path: Path, fake_curl: tuple[dict[str, str], Path]
) -> None:
    env, argv_file = fake_curl
    planted = tmp_path / "pwned"
    words = hostile(str(planted))
    await open_console(tab, proxy)
    base = proxy.url

    cases: list[tuple[dict[str, Any], str | None, list[str]]] = []
    for word in words:
        cases.append(
            (
                {**RECORD, "method": word},
                None,
                ["-X", word, base + "/2026-07/x", "--data-binary", "@body"],
            )
        )
        cases.append(({**RECORD, "path": "/2026-07/" + word}, None, [f"{base}/2026-07/{word}"]))
        cases.append(
            (
                {**RECORD, "method": "POST", "path": "/x?" + word},
                None,
                ["-X", "POST", f"{base}/x?{word}", "--data-binary", "@body"],
            )
        )
        socket = f"/tmp/{word}.sock"
        cases.append(
            (
                {**RECORD, "method": "HEAD", "path": "/" + word},
                socket,
                ["--unix-socket", socket, "--head", f"http://localhost/{word}"],
            )
        )
    lines = []
    for record, socket, _ in cases:
        lines += await curl_lines(tab, [record], socket)
    # A header, through the page's quoting function: -H and its value, literal.
    header_words = [["-H", f"X-Anything: {word}"] for word in words]
    lines += await tab.page.evaluate(
        "(lists) => lists.map((words) => ['curl', ...words.map(shellQuote)].join(' '))",
        header_words,
    )
    expected = [argv for _, _, argv in cases] + header_words

    for line, argv in zip(lines, expected, strict=True):
        code, output = await run_in_shell(line, cwd=tmp_path, env=env)
        assert code == 0, (line, output)
        assert not planted.exists(), line
        written = argv_file.read_text().splitlines()
        assert json.loads(written[-1]) == argv, line
    assert len(argv_file.read_text().splitlines()) == len(expected)


async def test_the_curl_line_of_an_absolute_form_request_is_a_valid_url(
    tab: Tab, proxy: CliServer, fake_curl: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    """`GET http://127.0.0.1:P/x` is kept as sent; its curl line asks the proxy for /x."""
    port = URL(proxy.url).port
    assert port is not None
    target = f"http://127.0.0.1:{port}/2026-07/echo/abs?fields=name"
    sent = await raw_request(
        port,
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert sent.status == 200
    await open_console(tab, proxy)
    row = tab.page.locator(ROWS)
    await async_api.expect(row).to_have_count(1, timeout=LIVE_MS)
    await row.click()
    line = await tab.page.locator("#detail-curl").inner_text()
    assert line == f"curl '{proxy.url}/2026-07/echo/abs?fields=name'"

    env, argv_file = fake_curl
    others = await curl_lines(
        tab, [{**RECORD, "path": "https://127.0.0.1?x=1"}, {**RECORD, "path": "*"}], None
    )
    for other in others:
        code, output = await run_in_shell(other, cwd=tmp_path, env=env)
        assert code == 0, output
    assert [json.loads(x) for x in argv_file.read_text().splitlines()] == [
        [f"{proxy.url}/?x=1"],
        ["--request-target", "*", f"{proxy.url}/"],
    ]
