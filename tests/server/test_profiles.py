"""Profiles (DESIGN section 9): several Criteo apps behind one proxy, one port each.

Through the installed CLI and real sockets, the fake Criteo issuing tokens per client
and metering each app's rate-limit window apart, as Criteo does.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import stat
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from tests.conftest import (
    CliServer,
    ManualClock,
    StartCliServer,
    assert_absent,
    assert_one_line_error,
    clean_env,
    run_cli,
)
from tests.profile_apps import (
    ADS_ID,
    REDIRECT_URI,
    RETAIL_ID,
    RETAIL_SECRET,
    ads,
    env,
    retail,
    three_app_criteo,
    write_config,
)

API = "/2026-07/advertisers/me"
PROFILE_LINE = re.compile(r"profile (\S+): serving on (http://\S+)")


@pytest.fixture
def criteo(clock: ManualClock) -> FakeCriteo:
    return three_app_criteo(clock)


def profile_urls(server: CliServer) -> dict[str, str]:
    """Every profile's address from the start-up lines: default first."""
    urls = {"default": server.url}
    for line in server.stdout_lines:
        if line.startswith("{"):  # --log-format json
            entry = json.loads(line)
            if entry.get("event") == "serving" and entry.get("profile"):
                urls[entry["profile"]] = entry["url"]
            continue
        match = PROFILE_LINE.search(line)
        if match:
            urls[match.group(1)] = match.group(2)
    return urls


async def wait_for_profiles(server: CliServer, names: set[str]) -> dict[str, str]:
    """The stdout drain reads on in the background: wait until every profile spoke."""
    await server.wait_for_output(lambda: names <= set(profile_urls(server)))
    return profile_urls(server)


async def authorize(config: Path, criteo: FakeCriteo, profile: str, client_id: str) -> None:
    code = criteo.consent(client_id, REDIRECT_URI)
    result = await run_cli(
        "authorize", "--profile", profile, f"--code={code}", "--config", str(config), env=env()
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
async def three_apps(
    tmp_path: Path, criteo: FakeCriteo, criteo_url: str, start_cli_server: StartCliServer
) -> tuple[CliServer, dict[str, str], Path]:
    """Two client-credentials apps and an authorization-code one, in one process."""
    store = tmp_path / "ads-tokens.json"
    config = write_config(
        tmp_path / "proxy.yaml", criteo_url, {"retail": retail(), "ads": ads(store)}
    )
    await authorize(config, criteo, "ads", ADS_ID)
    server = await start_cli_server("--config", str(config), "--port", "0", env=env())
    urls = await wait_for_profiles(server, {"default", "retail", "ads"})
    return server, urls, config


# --- serving -----------------------------------------------------------------------------------


async def test_each_port_is_served_with_its_own_apps_token(
    three_apps: tuple[CliServer, dict[str, str], Path],
    criteo: FakeCriteo,
    http: aiohttp.ClientSession,
) -> None:
    server, urls, _ = three_apps
    assert list(urls) == ["default", "retail", "ads"]
    assert len(set(urls.values())) == 3
    for name, client in (("default", DEMO_CLIENT_ID), ("retail", RETAIL_ID), ("ads", ADS_ID)):
        async with http.get(urls[name] + API) as resp:
            assert resp.status == 200, name
        assert criteo.issued_to[criteo.last_request.token or ""] == client, name
    assert server.process.returncode is None
    async with http.get(urls["retail"] + "/_proxy/status") as resp:
        status = await resp.json()
    assert [p["name"] for p in status["profiles"]] == ["default", "retail", "ads"]
    assert [p["listen"] for p in status["profiles"]] == list(urls.values())
    assert [p["token"]["client_id"] for p in status["profiles"]] == [
        DEMO_CLIENT_ID,
        RETAIL_ID,
        ADS_ID,
    ]
    assert status["profiles"][2]["token"]["grant_type"] == "authorization_code"
    assert await server.stop() == 0


async def test_twenty_cold_requests_per_port_make_one_token_request_per_app(
    tmp_path: Path,
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    gate, both_asked = asyncio.Event(), asyncio.Event()
    arrived = 0

    async def hold() -> None:
        nonlocal arrived
        arrived += 1
        if arrived == 2:  # both apps' warm-ups are at the token endpoint, held
            both_asked.set()
        await gate.wait()

    criteo.token_gate = hold  # every token request waits: the 60 requests find no token
    config = write_config(tmp_path / "proxy.yaml", criteo_url, {"retail": retail()})
    server = await start_cli_server("--config", str(config), "--port", "0", env=env())
    urls = await wait_for_profiles(server, {"default", "retail"})
    requests = [
        asyncio.ensure_future(http.get(urls[name] + API))
        for name in ("default", "retail")
        for _ in range(20)
    ]
    async with asyncio.timeout(10):
        await both_asked.wait()
    gate.set()
    responses = await asyncio.gather(*requests)
    assert [r.status for r in responses] == [200] * 40
    per_app = sorted(r.form["client_id"] for r in criteo.token_requests)
    assert per_app == [DEMO_CLIENT_ID, RETAIL_ID]
    for r in responses:
        r.release()
    assert await server.stop() == 0


async def test_a_wrong_secret_in_one_profile_fails_only_that_profile(
    tmp_path: Path,
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    config = write_config(tmp_path / "proxy.yaml", criteo_url, {"retail": retail()})
    server = await start_cli_server(
        "--config", str(config), "--port", "0", env=env(RETAIL_CLIENT_SECRET="wrong-9f2")
    )
    urls = await wait_for_profiles(server, {"default", "retail"})
    async with http.get(urls["retail"] + API) as resp:
        assert resp.status == 502
        assert resp.headers["X-Criteo-Proxy-Error"] == "token_request_failed"
        body = await resp.text()
    async with http.get(urls["retail"] + "/_proxy/ready") as resp:
        assert resp.status == 503
    async with http.get(urls["default"] + API) as resp:
        assert resp.status == 200
    async with http.get(urls["default"] + "/_proxy/ready") as resp:
        assert resp.status == 200
    assert await server.stop() == 0
    assert_absent({"wrong-9f2", DEMO_CLIENT_SECRET}, body, server.stderr, server.stdout)


async def test_one_apps_spent_window_makes_no_request_of_another_app_wait(
    tmp_path: Path,
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    # No reset during the test: a window of Criteo's minute, starting now.
    criteo.rate_limit, criteo.rate_window_seconds = 2, 60
    criteo.rate_window_start = time.time()
    config = write_config(
        tmp_path / "proxy.yaml",
        criteo_url,
        {"retail": retail()},
        rate_limit={"max_wait": 1},
    )
    server = await start_cli_server("--config", str(config), "--port", "0", env=env())
    urls = await wait_for_profiles(server, {"default", "retail"})
    statuses = []
    for _ in range(3):  # the default app spends its window: the third is refused at once
        async with http.get(urls["default"] + API) as resp:
            statuses.append((resp.status, resp.headers.get("X-Criteo-Proxy-Error")))
    assert statuses == [(200, None), (200, None), (429, "rate_limited")]
    for _ in range(2):  # the retail app has a window of its own, untouched
        async with http.get(urls["retail"] + API) as resp:
            assert resp.status == 200
    async with http.get(urls["retail"] + "/_proxy/requests") as resp:
        records = (await resp.json())["requests"]
    retail_records = [r for r in records if r["profile"] == "retail"]
    assert len(retail_records) == 2
    assert all(r["rate_limit_wait_ms"] == 0 for r in retail_records)
    assert await server.stop() == 0


async def test_logs_and_metrics_say_which_profile(
    three_apps: tuple[CliServer, dict[str, str], Path], http: aiohttp.ClientSession
) -> None:
    server, urls, _ = three_apps
    async with http.get(urls["retail"] + API) as resp:
        assert resp.status == 200
    for _ in range(200):  # each round trip lets the warm-ups (one per app) progress
        async with http.get(urls["ads"] + "/_proxy/status") as resp:
            states = [p["token"]["state"] for p in (await resp.json())["profiles"]]
        if states == ["valid"] * 3:
            break
    async with http.get(urls["ads"] + "/_proxy/metrics") as resp:
        text = await resp.text()
    requests = {
        s.labels["profile"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "criteo_proxy_requests_total"
    }
    assert "retail" in requests
    fetches = {
        s.labels["profile"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "criteo_proxy_token_fetches_total"
    }
    assert fetches == {"default", "retail", "ads"}
    assert await server.stop() == 0
    access = [line for line in server.stderr_lines if "criteo_proxy.access" in line and API in line]
    assert access
    assert all(line.endswith("profile=retail") for line in access)
    fetched = [line for line in server.stderr_lines if "token fetched" in line]
    assert {line.rsplit("profile=", 1)[1] for line in fetched} == {"default", "retail", "ads"}


async def test_json_logs_carry_the_profile_field(
    tmp_path: Path, criteo_url: str, start_cli_server: StartCliServer, http: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path / "proxy.yaml", criteo_url, {"retail": retail()})
    server = await start_cli_server(
        "--config", str(config), "--port", "0", "--log-format", "json", env=env()
    )
    urls = await wait_for_profiles(server, {"default", "retail"})
    async with http.get(urls["retail"] + API) as resp:
        assert resp.status == 200
    assert await server.stop() == 0
    entries = [json.loads(line) for line in server.stderr_lines]
    [access] = [e for e in entries if e["logger"] == "criteo_proxy.access" and e["path"] == API]
    assert access["profile"] == "retail"
    serving = [json.loads(line) for line in server.stdout_lines]
    assert [(e.get("profile"), e["event"]) for e in serving] == [
        (None, "serving"),
        ("retail", "serving"),
    ]


async def test_a_profile_whose_port_is_in_use_stops_the_start_naming_it(
    tmp_path: Path, criteo_url: str
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path / "proxy.yaml", criteo_url, {"retail": retail(port)})
        result = await run_cli("--config", str(config), "--port", "0", env=env())
    assert_one_line_error(result, 2, "profiles.retail.listen.port", str(port))
    assert "serving on" not in result.stdout


# --- authorization-code profiles ---------------------------------------------------------------


async def test_two_authorization_code_profiles_rotate_in_their_own_files(
    tmp_path: Path,
    criteo: FakeCriteo,
    criteo_url: str,
    start_cli_server: StartCliServer,
    http: aiohttp.ClientSession,
) -> None:
    first, second = tmp_path / "one.json", tmp_path / "two.json"
    two = ads(second)
    two["credentials"] = {
        **two["credentials"],
        "client_id": RETAIL_ID,
        "client_secret": RETAIL_SECRET,
    }
    config = write_config(tmp_path / "proxy.yaml", criteo_url, {"one": ads(first), "two": two})
    await authorize(config, criteo, "one", ADS_ID)
    await authorize(config, criteo, "two", RETAIL_ID)
    stored = {path: json.loads(path.read_text())["refresh_token"] for path in (first, second)}
    server = await start_cli_server("--config", str(config), "--port", "0", env=env())
    urls = await wait_for_profiles(server, {"one", "two"})
    for name in ("one", "two"):
        async with http.get(urls[name] + API) as resp:
            assert resp.status == 200
    assert await server.stop() == 0
    for path, client in ((first, ADS_ID), (second, RETAIL_ID)):
        entry = json.loads(path.read_text())
        assert entry["client_id"] == client
        assert entry["refresh_token"] != stored[path]  # rotated (strict rotation)
        assert criteo.refresh_tokens[entry["refresh_token"]] == client
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- the CLI -----------------------------------------------------------------------------------


async def test_token_with_a_profile_prints_that_apps_token_from_its_own_cache(
    tmp_path: Path, criteo: FakeCriteo, criteo_url: str, private_cache: Path
) -> None:
    config = write_config(tmp_path / "proxy.yaml", criteo_url, {"retail": retail()})
    result = await run_cli("token", "--profile", "retail", "--config", str(config), env=env())
    assert result.returncode == 0, result.stderr
    assert criteo.issued_to[result.stdout.strip()] == RETAIL_ID
    assert (private_cache / "criteo-proxy" / "token-retail.json").exists()
    unknown = await run_cli("token", "--profile", "nope", "--config", str(config), env=env())
    assert_one_line_error(unknown, 2, "--profile", "nope", "retail")


async def test_check_checks_every_profile_one_line_each_and_fails_if_one_does(
    tmp_path: Path, criteo: FakeCriteo, criteo_url: str
) -> None:
    config = write_config(tmp_path / "proxy.yaml", criteo_url, {"retail": retail(), "x": retail()})
    good = await run_cli("check", "--config", str(config), env=env())
    assert good.returncode == 0, good.stderr
    assert [line.split(":")[0] for line in good.stdout.splitlines()] == ["default", "retail", "x"]
    assert all(": OK (" in line for line in good.stdout.splitlines())

    bad = await run_cli("check", "--config", str(config), env=env(RETAIL_CLIENT_SECRET="nope-1"))
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert lines[0].startswith("default: OK")
    assert lines[1].startswith("retail: FAILED")
    assert "invalid_client" in lines[1]
    assert_one_line_error(bad, 1, "retail", "x")
    assert "nope-1" not in bad.stdout + bad.stderr

    one = await run_cli("check", "--profile", "default", "--config", str(config), env=env())
    assert one.returncode == 0
    assert one.stdout.splitlines() == [one.stdout.splitlines()[0]]
    assert one.stdout.startswith("default: OK")


async def test_status_with_a_profile_asks_that_profiles_port(
    three_apps: tuple[CliServer, dict[str, str], Path],
) -> None:
    server, urls, _ = three_apps
    port = urls["retail"].rsplit(":", 1)[1]
    # The profile's port is 0 in the file: --url names the one it got.
    result = await run_cli("status", "--url", urls["retail"], env=clean_env())
    assert result.returncode == 0, result.stderr
    for name in ("default", "retail", "ads"):
        assert f"profile {name} on" in result.stdout
    assert port in result.stdout
    assert await server.stop() == 0


async def test_demo_keeps_working_unchanged_with_a_config_that_has_profiles(
    tmp_path: Path, criteo_url: str, start_cli_server: StartCliServer, http: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path / "proxy.yaml", criteo_url, {"retail": retail()})
    server = await start_cli_server("demo", "--config", str(config), "--port", "0", env=env())
    async with http.get(server.url + API) as resp:
        assert resp.status == 200
    assert not any(PROFILE_LINE.search(line) for line in server.stdout_lines)
    assert await server.stop() == 0
