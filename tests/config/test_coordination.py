"""The coordination section (DESIGN 11): what it accepts, and one line naming
``coordination.<key>`` for what it does not; the password and keys never shown."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.config.addresses import shown_redis_url
from proxy.config.loader import parse_config
from tests.config.conftest import ENV, config_error, with_credentials
from tests.conftest import assert_one_line_error, clean_env, run_cli

GOOD_KEY = base64.b64encode(os.urandom(32)).decode()


def parse(**sections: Any) -> Any:
    return parse_config(with_credentials(**sections), environ=ENV)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:pw@redis.internal:6380/2",
        "redis://user:pw@[::1]:6379",
        "rediss://redis.example:6380/0",
        "unix:///run/redis/redis.sock?db=3",
    ],
)
def test_redis_urls_of_every_scheme_are_accepted(url: str) -> None:
    config = parse(coordination={"redis_url": url})
    assert config.coordination.enabled
    assert config.coordination.redis_url is not None
    assert config.coordination.redis_url.reveal() == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:6379", "unknown scheme 'http'"),
        ("127.0.0.1:6379", "unknown scheme"),
        ("redis://:s3cret-pw@:6379/0", "no host"),
        ("redis://127.0.0.1:99999/0", "unreadable"),
        ("redis://127.0.0.1:6379/db1", "database 'db1' is not a number"),
        ("unix://relative.sock", "expected unix:///absolute/path.sock"),
        ("redis://h:6379/0#frag", "fragment"),
    ],
)
def test_a_malformed_redis_url_is_one_line_naming_the_key(url: str, why: str) -> None:
    message = config_error(parse, coordination={"redis_url": url})
    assert message.startswith("coordination.redis_url: ")
    assert why in message
    assert "s3cret-pw" not in message


def test_the_shown_url_carries_no_user_info_nor_query() -> None:
    shown = shown_redis_url("rediss://admin:pw-7@redis.example:6380/2?password=pw-8")
    assert shown == "rediss://redis.example:6380/2"


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"timeout": 0}, "coordination.timeout: expected more than 0"),
        ({"key_prefix": "has space"}, "coordination.key_prefix"),
        ({"encryption_key": "dG9vIHNob3J0"}, "coordination.encryption_key: expected base64"),
        ({"previous_encryption_key": "%%%"}, "coordination.previous_encryption_key"),
        ({"port": 6379}, "coordination.port: unknown key"),
    ],
)
def test_other_coordination_keys_are_checked(section: dict[str, Any], fragment: str) -> None:
    message = config_error(parse, coordination={"redis_url": "redis://h:1/0", **section})
    assert fragment in message
    assert "dG9vIHNob3J0" not in message


def test_a_good_encryption_key_is_taken_and_never_in_a_repr() -> None:
    config = parse(coordination={"redis_url": "redis://h:1/0", "encryption_key": GOOD_KEY})
    assert GOOD_KEY not in repr(config)


def test_coordination_is_shared_and_a_profile_may_not_override_it() -> None:
    raw = with_credentials(
        coordination={"redis_url": "redis://h:1/0"},
        profiles={"retail": {"listen": {"port": 8081}, "coordination": {"key_prefix": "x"}}},
    )
    message = config_error(parse_config, raw, environ=ENV)
    assert message.startswith("profiles.retail.coordination: shared by every profile")


def test_two_authorization_code_profiles_of_one_client_id_are_refused_in_a_fleet() -> None:
    code = {"grant_type": "authorization_code", "redirect_uri": "https://app.example/cb"}
    raw = with_credentials(
        credentials=code,
        coordination={"redis_url": "redis://h:1/0"},
        profiles={"second": {"listen": {"port": 8081}}},
    )
    message = config_error(parse_config, raw, environ={})  # both: client id "cid"
    assert message.startswith("profiles.second.credentials.client_id:")
    raw.pop("coordination")
    assert parse_config(raw, environ={}).profiles  # alone, each is its own app


async def test_through_the_cli_a_bad_url_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"coordination": {"redis_url": "memcached://h:1"}}))
    result = await run_cli("run", "--config", str(path), env=clean_env(**ENV))
    assert_one_line_error(result, 2, "coordination.redis_url", "unknown scheme 'memcached'")


async def test_a_missing_client_library_names_the_pip_install(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"coordination": {"redis_url": "redis://127.0.0.1:9/0"}}))
    hide_redis = (
        "import sys; sys.modules['redis'] = None; from proxy.cli import main; main(sys.argv[1:])"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        hide_redis,
        "run",
        "--config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(**ENV),
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2, stderr
    (line,) = stderr.decode().splitlines()
    assert line.endswith(
        "coordination.redis_url: needs redis, which are not installed: "
        "pip install 'criteo-proxy[redis]'"
    )


async def test_without_the_redis_extra_a_lone_proxy_serves_as_ever(
    tmp_path: Path, criteo_url: str
) -> None:
    """redis-py and cryptography load only with coordination.redis_url set."""
    without_extra = (
        "import sys; sys.modules['redis'] = None; sys.modules['cryptography'] = None; "
        "from proxy.cli import main; main(sys.argv[1:])"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        without_extra,
        "run",
        "--port",
        "0",
        "--upstream",
        criteo_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(CRITEO_CLIENT_ID="demo-client", CRITEO_CLIENT_SECRET="demo-secret"),
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        url = line.split("serving on ", 1)[1].strip()
        async with (
            aiohttp.ClientSession() as http,
            http.get(url + "/2026-07/advertisers/me") as answer,
        ):
            assert answer.status == 200
    finally:
        process.terminate()
        _, stderr = await process.communicate()
    assert process.returncode == 0, stderr
    assert b"Traceback" not in stderr
