"""Authorization-code apps: ``criteo-proxy authorize``, the token store, refresh and rotation.

DESIGN.md §1 (``authorize``) and §3.4. The command runs as a subprocess against
the fake Criteo, which serves in the test's event loop (async helpers only);
the store's own guarantees and single flight are checked in process. Only
127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from proxy.tokens.store import TokenStore
from tests import conftest
from tests.conftest import (
    CliResult,
    CliServer,
    ManualClock,
    StartProxy,
    assert_absent,
    assert_one_line_error,
    clean_env,
    run_cli,
)

StartCliServer = Callable[..., Awaitable[CliServer]]

API_PATH = "/2025-10/advertisers/me"
REDIRECT_URI = "https://app.example/cb"
CONSENT_URL = "https://consent.criteo.com/request"
AUTHORIZE_AGAIN = "criteo-proxy authorize"


# --- helpers ------------------------------------------------------------------------------


def demo_env(**extra: str) -> dict[str, str]:
    return clean_env(
        CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET, **extra
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client, like curl: no proxies from the environment."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """The token store, in a directory that does not exist yet."""
    return tmp_path / "store" / "tokens.json"


@pytest.fixture
def config_file(tmp_path: Path, criteo_url: str, store_path: Path) -> Path:
    """A config file for an authorization-code app aimed at the fake (JSON is YAML)."""
    path = tmp_path / "criteo-proxy.yaml"
    path.write_text(
        json.dumps(
            {
                "upstream": {"url": criteo_url},
                "credentials": {
                    "grant_type": "authorization_code",
                    "redirect_uri": REDIRECT_URI,
                    "token_store": str(store_path),
                },
                "listen": {"port": 0},
            }
        ),
        encoding="utf-8",
    )
    return path


async def run_to_exit(*args: str, env: dict[str, str], timeout: float = 20) -> CliResult:
    """Like run_cli, for a command that must exit by itself: killed (and failed) if it does not."""
    process = await asyncio.create_subprocess_exec(
        *conftest.cli_command(),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"criteo-proxy {' '.join(args)} did not exit") from None
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


def stored_token(path: Path) -> str:
    stored = TokenStore(str(path)).load()
    assert stored.client_id == DEMO_CLIENT_ID
    return stored.refresh_token


def refresh_grants(criteo: FakeCriteo) -> list[dict[str, str]]:
    return [r.form for r in criteo.token_requests if r.form.get("grant_type") == "refresh_token"]


def live_refresh_token(criteo: FakeCriteo) -> str:
    """With strict rotation exactly one refresh token is alive at Criteo: the newest."""
    assert len(criteo.refresh_tokens) == 1, criteo.refresh_tokens
    return next(iter(criteo.refresh_tokens))


async def authorize_with_code(criteo: FakeCriteo, config_file: Path, store_path: Path) -> str:
    """The advertiser consents and ``authorize --code`` stores the refresh token; returns it."""
    code = criteo.consent(DEMO_CLIENT_ID, REDIRECT_URI)
    result = await run_cli(
        "authorize",
        f"--code={code}",
        "--redirect-uri",
        REDIRECT_URI,
        "--config",
        str(config_file),
        env=demo_env(),
    )
    assert result.returncode == 0, result.stderr
    return stored_token(store_path)


async def landing_url(http: aiohttp.ClientSession, criteo_url: str, consent_url: str) -> str:
    """Follow the consent URL at the fake's consent page; the address the browser lands on."""
    page = URL(criteo_url + "/_fake/consent").with_query(URL(consent_url).query)
    async with http.get(page, allow_redirects=False) as resp:
        assert resp.status == 302
        return resp.headers["Location"]


def record_store_on_api_calls(
    criteo: FakeCriteo, store_path: Path
) -> list[tuple[str | None, str, str]]:
    """Answer API_PATH like Criteo, noting (access token, stored, newest at Criteo) each time."""
    seen: list[tuple[str | None, str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        seen.append((token, stored_token(store_path), list(criteo.refresh_tokens)[-1]))
        return web.json_response({"data": [], "errors": [], "warnings": []})

    criteo.handlers[API_PATH] = handler
    return seen


async def get_ok(http: aiohttp.ClientSession, server: CliServer) -> None:
    async with http.get(server.url + API_PATH) as resp:
        assert resp.status == 200, await resp.text()


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# --- 1. authorize --print-url -------------------------------------------------------------


async def test_print_url_prints_one_line_the_consent_url_with_every_parameter_url_encoded(
    tmp_path: Path,
) -> None:
    client_id = "démo client&x=1/?+"
    redirect_uri = "https://app.example/cb?next=/a b&x=é"
    state = "s t&a=t/e?ü+%20;"

    result = await run_cli(
        "authorize",
        "--print-url",
        "--state",
        state,
        "--redirect-uri",
        redirect_uri,
        env=clean_env(CRITEO_CLIENT_ID=client_id, CRITEO_CLIENT_SECRET="unused-secret"),
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    url = lines[0]
    assert url.isascii()
    assert " " not in url
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CONSENT_URL
    assert parts.fragment == ""
    assert parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True) == [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("state", state),
    ]
    assert "unused-secret" not in result.stdout + result.stderr


# --- 2. authorize --code / --from-url: the exchange and the store ------------------------

EXCHANGES = ["code", "from-url-with-state", "from-url-without-state"]


@pytest.mark.parametrize("how", EXCHANGES)
async def test_authorize_exchanges_the_code_and_stores_the_refresh_token_0600_in_a_0700_dir(
    how: str,
    criteo: FakeCriteo,
    criteo_url: str,
    config_file: Path,
    store_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    config = ("--config", str(config_file))
    if how == "code":
        code = criteo.consent(DEMO_CLIENT_ID, REDIRECT_URI)
        args: tuple[str, ...] = (f"--code={code}", "--redirect-uri", REDIRECT_URI)
    else:
        state = "st-42" if how == "from-url-with-state" else None
        state_args = ("--state", state) if state else ()
        printed = await run_cli("authorize", "--print-url", *state_args, *config, env=demo_env())
        assert printed.returncode == 0, printed.stderr
        landed = await landing_url(http, criteo_url, printed.stdout.strip())
        code = URL(landed).query["code"]
        args = ("--from-url", landed, *state_args)
    assert not store_path.parent.exists()

    result = await run_cli("authorize", *args, *config, env=demo_env())

    assert result.returncode == 0, result.stderr
    exchanges = [r for r in criteo.token_requests if r.form.get("grant_type") != "refresh_token"]
    assert len(exchanges) == 1
    assert exchanges[0].content_type.startswith("application/x-www-form-urlencoded")
    assert exchanges[0].form == {
        "grant_type": "authorization_code",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "code": code,
        "redirect_uri": REDIRECT_URI,
    }
    assert stat.S_IMODE(store_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    refresh_token = stored_token(store_path)
    assert criteo.refresh_tokens == {refresh_token: DEMO_CLIENT_ID}  # the one the fake issued
    assert str(store_path) in result.stdout
    assert "Traceback" not in result.stderr
    assert_absent({refresh_token, DEMO_CLIENT_SECRET, code}, result.stdout, result.stderr)
    assert [p.name for p in store_path.parent.iterdir()] == [store_path.name]  # no temp file


QUERY_REDIRECT_URI = "https://app.example/cb?tenant=acme%20corp&lang=fr&empty="


@pytest.mark.parametrize("where", ["config", "flag", "landing"])
async def test_a_redirect_uri_with_a_query_is_kept_byte_for_byte_through_consent_and_exchange(
    where: str, criteo: FakeCriteo, criteo_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """RFC 6749 3.1.2: a redirect URI may carry a query; it is one parameter of the consent
    URL, and the exchange sends it exactly as the consent had it (DESIGN 3.4)."""
    store_path = tmp_path / "tokens.json"
    credentials: dict[str, str] = {
        "grant_type": "authorization_code",
        "token_store": str(store_path),
    }
    if where == "config":
        credentials["redirect_uri"] = QUERY_REDIRECT_URI
    config_file = tmp_path / "criteo-proxy.yaml"
    config_file.write_text(
        json.dumps({"upstream": {"url": criteo_url}, "credentials": credentials}),
        encoding="utf-8",
    )
    config = ("--config", str(config_file))
    flag = () if where == "config" else ("--redirect-uri", QUERY_REDIRECT_URI)
    printed = await run_cli(
        "authorize", "--print-url", "--state", "s1", *flag, *config, env=demo_env()
    )
    assert printed.returncode == 0, printed.stderr
    consent_query = parse_qsl(urlsplit(printed.stdout.strip()).query, strict_parsing=True)
    assert ("redirect_uri", QUERY_REDIRECT_URI) in consent_query
    landed = await landing_url(http, criteo_url, printed.stdout.strip())
    assert landed.startswith(QUERY_REDIRECT_URI + "&code=")

    exchange = ("--from-url", landed, "--state", "s1")
    if where == "flag":
        exchange = (f"--code={URL(landed).query['code']}", *flag)
    result = await run_cli("authorize", *exchange, *config, env=demo_env())

    assert result.returncode == 0, result.stderr
    assert criteo.token_requests[-1].form["redirect_uri"] == QUERY_REDIRECT_URI
    assert store_path.exists()


@pytest.mark.parametrize(
    "step", [("--print-url",), ("--code=c",), ("--from-url", REDIRECT_URI + "?code=c")]
)
async def test_a_redirect_uri_flag_with_a_fragment_is_a_one_line_error(
    step: tuple[str, ...], config_file: Path, criteo: FakeCriteo
) -> None:
    result = await run_to_exit(
        "authorize",
        *step,
        "--redirect-uri",
        REDIRECT_URI + "#top",
        "--config",
        str(config_file),
        env=demo_env(),
    )
    assert_one_line_error(result, 2, "--redirect-uri", "fragment")
    assert criteo.token_requests == []


# --- 3. TokenStore.save: modes and atomic replacement (in process) -----------------------


@pytest.mark.usefixtures("umask_zero")
def test_save_creates_the_dir_0700_and_the_file_0600_even_with_umask_0_and_at_every_instant(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes_before_rename: list[int] = []
    real_replace = os.replace

    def spying_replace(source: Any, target: Any) -> None:
        modes_before_rename.append(stat.S_IMODE(os.stat(source).st_mode))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", spying_replace)
    store = TokenStore(str(store_path))

    store.save(DEMO_CLIENT_ID, "rt-first")
    store.save(DEMO_CLIENT_ID, "rt-second")

    assert stat.S_IMODE(store_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    assert modes_before_rename == [0o600, 0o600]  # the temp file was never wider
    assert store.load().refresh_token == "rt-second"
    assert [p.name for p in store_path.parent.iterdir()] == [store_path.name]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_save_leaves_the_previous_file_intact_and_no_temp_file(
    failing: str, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TokenStore(str(store_path))
    store.save(DEMO_CLIENT_ID, "rt-old")
    before = store_path.read_bytes()

    def disk_full(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.save(DEMO_CLIENT_ID, "rt-new")
    monkeypatch.undo()

    assert store_path.read_bytes() == before
    assert store.load().refresh_token == "rt-old"
    assert [p.name for p in store_path.parent.iterdir()] == [store_path.name]


def test_save_under_a_parent_that_is_a_file_raises_oserror_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file\n", encoding="utf-8")

    with pytest.raises(OSError):  # noqa: PT011 - which errno depends on the platform
        TokenStore(str(blocker / "tokens.json")).save(DEMO_CLIENT_ID, "rt-x")

    assert blocker.read_text(encoding="utf-8") == "a file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-dir"]


# --- 4. --from-url refusals ---------------------------------------------------------------


async def test_from_url_with_a_wrong_state_fails_with_one_line_and_stores_nothing(
    criteo: FakeCriteo,
    criteo_url: str,
    config_file: Path,
    store_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    printed = await run_cli(
        "authorize",
        "--print-url",
        "--state",
        "right",
        "--config",
        str(config_file),
        env=demo_env(),
    )
    landed = await landing_url(http, criteo_url, printed.stdout.strip())

    result = await run_cli(
        "authorize",
        "--from-url",
        landed,
        "--state",
        "wrong",
        "--config",
        str(config_file),
        env=demo_env(),
    )

    assert result.returncode != 0
    assert_one_line_error(result, result.returncode, "state")
    assert not store_path.exists()
    assert criteo.token_requests == []  # the code was not even sent
    assert_absent({URL(landed).query["code"]}, result.stdout, result.stderr)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("error=access_denied&error_description=The+user+refused&state=s", "consent was not given"),
        ("state=s", "no code"),
        ("code=&state=s", "no code"),
        ("https://xn--a.example/cb?code=c&state=s", "full address"),
    ],
    ids=["access-denied", "no-code", "empty-code", "bad-punycode"],
)
async def test_from_url_without_a_usable_code_fails_with_one_line_saying_why(
    query: str, fragment: str, criteo: FakeCriteo, config_file: Path, store_path: Path
) -> None:
    result = await run_cli(
        "authorize",
        "--from-url",
        query if query.startswith("https://") else f"{REDIRECT_URI}?{query}",
        "--state",
        "s",
        "--config",
        str(config_file),
        env=demo_env(),
    )

    assert result.returncode != 0
    line = assert_one_line_error(result, result.returncode, fragment)
    if "access_denied" in query:
        assert "access_denied" in line
    assert not store_path.exists()
    assert criteo.token_requests == []


# --- 5. codes are single use, short-lived and bound to their redirect URI -----------------


async def test_a_code_is_single_use_the_second_exchange_fails_and_keeps_the_first_store(
    criteo: FakeCriteo, config_file: Path, store_path: Path
) -> None:
    code = criteo.consent(DEMO_CLIENT_ID, REDIRECT_URI)
    args = (
        "authorize",
        f"--code={code}",
        "--redirect-uri",
        REDIRECT_URI,
        "--config",
        str(config_file),
    )
    first = await run_cli(*args, env=demo_env())
    assert first.returncode == 0, first.stderr
    before = store_path.read_bytes()

    second = await run_cli(*args, env=demo_env())

    assert_one_line_error(second, 1, "invalid_grant", AUTHORIZE_AGAIN)
    assert store_path.read_bytes() == before
    assert_absent({code, DEMO_CLIENT_SECRET, stored_token(store_path)}, second.stderr)


async def test_an_expired_code_fails_with_invalid_grant_and_stores_nothing(
    criteo: FakeCriteo, clock: ManualClock, config_file: Path, store_path: Path
) -> None:
    code = criteo.consent(DEMO_CLIENT_ID, REDIRECT_URI)
    clock.advance(criteo.code_lifetime + 1)

    result = await run_cli(
        "authorize",
        f"--code={code}",
        "--redirect-uri",
        REDIRECT_URI,
        "--config",
        str(config_file),
        env=demo_env(),
    )

    assert_one_line_error(result, 1, "invalid_grant", AUTHORIZE_AGAIN)
    assert not store_path.exists()


async def test_a_code_bound_to_another_redirect_uri_fails_with_invalid_grant(
    criteo: FakeCriteo, config_file: Path, store_path: Path
) -> None:
    code = criteo.consent(DEMO_CLIENT_ID, "https://other.example/cb")

    result = await run_cli(
        "authorize",
        f"--code={code}",
        "--redirect-uri",
        REDIRECT_URI,
        "--config",
        str(config_file),
        env=demo_env(),
    )

    assert_one_line_error(result, 1, "invalid_grant", AUTHORIZE_AGAIN)
    assert criteo.token_requests[-1].form["redirect_uri"] == REDIRECT_URI
    assert not store_path.exists()


# --- 6-8. the server: refresh, rotation, restart, crash ------------------------------------


async def test_server_refreshes_with_the_stored_token_and_stores_the_rotated_one_before_use(
    criteo: FakeCriteo,
    config_file: Path,
    store_path: Path,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    first = await authorize_with_code(criteo, config_file, store_path)
    seen = record_store_on_api_calls(criteo, store_path)

    server = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, server)
    criteo.revoke_tokens()  # the next call gets 401: the proxy refreshes in the request
    await get_ok(http, server)

    grants = refresh_grants(criteo)
    assert grants[0]["refresh_token"] == first
    assert grants[0]["client_id"] == DEMO_CLIENT_ID
    assert all(
        r.content_type.startswith("application/x-www-form-urlencoded")
        for r in criteo.token_requests
    )
    for previous, grant in itertools.pairwise(grants):
        assert grant["refresh_token"] != previous["refresh_token"]  # always the newest one
    newest = live_refresh_token(criteo)
    assert first not in criteo.refresh_tokens
    assert stored_token(store_path) == newest
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    # The fake runs the handler only for a valid access token: each one reached Criteo
    # only once the refresh token of its answer was on disk.
    assert len(seen) == 2
    assert seen[0][0] != seen[1][0]  # the second call used the access token of a new refresh
    for _token, on_disk, newest_then in seen:
        assert on_disk == newest_then
    assert await server.stop() == 0
    assert_absent({first, newest, DEMO_CLIENT_SECRET}, server.stdout, server.stderr)


async def test_a_restart_reuses_the_refresh_token_written_by_the_previous_run(
    criteo: FakeCriteo,
    config_file: Path,
    store_path: Path,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    await authorize_with_code(criteo, config_file, store_path)
    server = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, server)
    assert await server.stop() == 0
    written = stored_token(store_path)
    grants_before = len(refresh_grants(criteo))

    again = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, again)

    new_grants = refresh_grants(criteo)[grants_before:]
    assert new_grants
    assert new_grants[0]["refresh_token"] == written
    assert stored_token(store_path) == live_refresh_token(criteo)
    assert await again.stop() == 0


async def test_after_sigkill_right_after_a_refresh_the_file_holds_the_newest_token(
    criteo: FakeCriteo,
    config_file: Path,
    store_path: Path,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    await authorize_with_code(criteo, config_file, store_path)
    server = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, server)
    criteo.revoke_tokens()
    await get_ok(http, server)  # a refresh (with rotation) just happened

    server.process.kill()
    await server.process.wait()

    on_disk = stored_token(store_path)
    assert on_disk == live_refresh_token(criteo)  # strict: only the newest is alive
    grants_before = len(refresh_grants(criteo))
    again = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, again)
    assert refresh_grants(criteo)[grants_before]["refresh_token"] == on_disk
    assert await again.stop() == 0


async def test_a_rotation_lost_before_it_was_written_says_to_run_authorize_again(
    criteo: FakeCriteo,
    criteo_url: str,
    config_file: Path,
    store_path: Path,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    on_disk = await authorize_with_code(criteo, config_file, store_path)
    before = store_path.read_bytes()
    # Criteo rotated, but the process died with the answer: the file holds a dead token.
    form = {
        "grant_type": "refresh_token",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "refresh_token": on_disk,
    }
    async with http.post(criteo_url + "/oauth2/token", data=form) as resp:
        assert resp.status == 200
        lost = (await resp.json())["refresh_token"]

    server = await start_cli_server("--config", str(config_file), env=demo_env())
    async with http.get(server.url + API_PATH) as resp:
        assert resp.status == 502
        assert resp.headers["X-Criteo-Proxy-Error"] == "token_request_failed"
        detail = (await resp.json())["errors"][0]["detail"]
    async with http.get(server.url + "/_proxy/ready") as resp:
        assert resp.status == 503
        reason = (await resp.json())["reason"]

    for text in (detail, reason):
        assert AUTHORIZE_AGAIN in text
        assert "again" in text
        assert str(store_path) in text
    assert store_path.read_bytes() == before
    assert await server.stop() == 0
    assert AUTHORIZE_AGAIN in server.stderr  # the log says it too
    assert_absent({on_disk, lost, DEMO_CLIENT_SECRET}, detail, reason, server.stdout, server.stderr)


async def test_with_lenient_rotation_an_older_copy_of_the_store_still_works(
    criteo: FakeCriteo,
    config_file: Path,
    store_path: Path,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    criteo.strict_rotation = False
    old = await authorize_with_code(criteo, config_file, store_path)
    old_copy = store_path.read_bytes()
    server = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, server)
    criteo.revoke_tokens()
    await get_ok(http, server)
    server.process.kill()
    await server.process.wait()
    assert stored_token(store_path) != old  # it did rotate and store
    assert old in criteo.refresh_tokens  # but the old one stays valid

    store_path.write_bytes(old_copy)  # back to the older copy (still 0600)
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    grants_before = len(refresh_grants(criteo))
    again = await start_cli_server("--config", str(config_file), env=demo_env())
    await get_ok(http, again)

    assert refresh_grants(criteo)[grants_before]["refresh_token"] == old
    assert await again.stop() == 0


# --- 9-10. in process: single flight, a dead refresh token -------------------------------


def auth_code_sections(store_path: Path) -> dict[str, Any]:
    return {
        "credentials": {
            "grant_type": "authorization_code",
            "redirect_uri": REDIRECT_URI,
            "token_store": str(store_path),
        }
    }


async def start_auth_code_proxy(
    start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock, store_path: Path
) -> tuple[TestClient[Any, Any], str]:
    """A proxy whose store holds a refresh token Criteo issued; ready (the first refresh done)."""
    issued = "rt-issued-by-criteo"
    criteo.refresh_tokens[issued] = DEMO_CLIENT_ID
    TokenStore(str(store_path)).save(DEMO_CLIENT_ID, issued)
    client = await start_proxy(clock=clock, **auth_code_sections(store_path))
    resp = await client.get("/_proxy/ready")
    assert resp.status == 200, await resp.text()
    return client, issued


@pytest.mark.parametrize("how", ["expired", "revoked"])
async def test_fifty_concurrent_requests_needing_a_token_cause_one_refresh_with_strict_rotation(
    how: str, start_proxy: StartProxy, criteo: FakeCriteo, clock: ManualClock, store_path: Path
) -> None:
    client, issued = await start_auth_code_proxy(start_proxy, criteo, clock, store_path)
    assert [g["refresh_token"] for g in refresh_grants(criteo)] == [issued]
    rotated = stored_token(store_path)
    if how == "expired":
        clock.advance(criteo.expires_in + 1)
    else:
        criteo.revoke_tokens()

    async def one() -> int:
        resp = await client.get(API_PATH)
        await resp.read()
        return resp.status

    statuses = await asyncio.gather(*(one() for _ in range(50)))

    assert statuses == [200] * 50
    grants = refresh_grants(criteo)
    assert len(grants) == 2  # the warm-up's, then exactly one for all fifty
    assert grants[1]["refresh_token"] == rotated
    assert stored_token(store_path) == live_refresh_token(criteo)
    assert stored_token(store_path) != rotated


async def test_a_refresh_token_criteo_rejects_gives_502_saying_to_authorize_again_and_keeps_file(
    start_proxy: StartProxy,
    criteo: FakeCriteo,
    clock: ManualClock,
    store_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client, issued = await start_auth_code_proxy(start_proxy, criteo, clock, store_path)
    current = stored_token(store_path)
    before = store_path.read_bytes()
    criteo.refresh_tokens.clear()  # Criteo no longer knows it (revoked consent, lost rotation)
    clock.advance(criteo.expires_in + 1)  # the access token is gone too

    bodies: list[str] = []
    for _ in range(3):
        resp = await client.get(API_PATH)
        body = await resp.text()
        bodies.append(body)
        assert resp.status == 502, body
        assert resp.headers["X-Criteo-Proxy-Error"] == "token_request_failed"
        error = json.loads(body)["errors"][0]
        assert error["code"] == "token_request_failed"
        assert AUTHORIZE_AGAIN in error["detail"]
        assert "again" in error["detail"]
    resp = await client.get("/_proxy/ready")
    body = await resp.text()
    bodies.append(body)
    assert resp.status == 503
    assert AUTHORIZE_AGAIN in json.loads(body)["reason"]

    assert store_path.read_bytes() == before
    assert any(AUTHORIZE_AGAIN in record.getMessage() for record in caplog.records)
    assert_absent({issued, current, DEMO_CLIENT_SECRET}, *bodies, caplog.text)


# --- 11-12. start-up and config errors ------------------------------------------------------


def _missing(path: Path) -> None:
    pass


def _directory(path: Path) -> None:
    path.mkdir(parents=True, mode=0o700)


def _write(text: str, mode: int = 0o600) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)

    return write


def _other_client(path: Path) -> None:
    TokenStore(str(path)).save("someone-else", "rt-of-someone-else")


VALID_STORE = json.dumps({"version": 1, "client_id": DEMO_CLIENT_ID, "refresh_token": "rt-x"})
FIX_HINTS = (AUTHORIZE_AGAIN, "chmod 600", "remove", "delete", "rm ")

BAD_STORES: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "missing": (_missing, (AUTHORIZE_AGAIN,)),
    "a-directory": (_directory, ()),
    "not-json": (_write("not json {"), ("corrupt", AUTHORIZE_AGAIN)),
    "json-without-refresh-token": (
        _write(json.dumps({"client_id": DEMO_CLIENT_ID})),
        ("corrupt", AUTHORIZE_AGAIN),
    ),
    "empty": (_write(""), ("corrupt", AUTHORIZE_AGAIN)),
    "readable-by-others-644": (_write(VALID_STORE, 0o644), ("chmod 600",)),
    "readable-by-group-640": (_write(VALID_STORE, 0o640), ("chmod 600",)),
    "another-client-id": (_other_client, ("someone-else", AUTHORIZE_AGAIN)),
}


@pytest.mark.parametrize(("make_bad", "fragments"), BAD_STORES.values(), ids=BAD_STORES.keys())
async def test_an_unusable_token_store_at_start_is_exit_2_with_one_line_naming_file_and_fix(
    make_bad: Callable[[Path], None],
    fragments: tuple[str, ...],
    criteo: FakeCriteo,
    config_file: Path,
    store_path: Path,
) -> None:
    make_bad(store_path)
    before = store_path.read_bytes() if store_path.is_file() else None

    result = await run_to_exit("--config", str(config_file), env=demo_env())

    line = assert_one_line_error(result, 2, "credentials.token_store", str(store_path), *fragments)
    assert any(hint in line for hint in FIX_HINTS), f"no way to fix it in: {line}"
    assert "serving on" not in result.stdout
    assert criteo.token_requests == []
    if before is not None:
        assert store_path.read_bytes() == before


@pytest.mark.parametrize(
    "step",
    [("--print-url",), ("--code=some-code",)],
    ids=["print-url", "code"],
)
async def test_authorize_without_any_redirect_uri_is_a_one_line_error_naming_the_flag(
    step: tuple[str, ...], tmp_path: Path, criteo_url: str, criteo: FakeCriteo
) -> None:
    """The config may omit credentials.redirect_uri (the server never sends it); authorize
    then needs --redirect-uri, and says so in one line."""
    config_file = tmp_path / "criteo-proxy.yaml"
    config_file.write_text(
        json.dumps(
            {
                "upstream": {"url": criteo_url},
                "credentials": {
                    "grant_type": "authorization_code",
                    "token_store": str(tmp_path / "tokens.json"),
                },
            }
        ),
        encoding="utf-8",
    )

    result = await run_to_exit("authorize", *step, "--config", str(config_file), env=demo_env())

    assert_one_line_error(result, 2, "--redirect-uri")
    assert criteo.token_requests == []
