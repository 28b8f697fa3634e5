"""security.api_keys_file: the inbound keys read from a mounted file, one per line, like
credentials.client_secret_file (issue 20, the deploy item's config part)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.config.loader import parse_config
from proxy.config.schema import Secret
from tests.config.conftest import API_KEY, config_error, with_credentials
from tests.conftest import StartProxy, assert_absent, assert_one_line_error, demo_env, run_cli

OTHER_KEY = "inbound-key-2-77e1"


def keys_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "api-keys"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_keys_are_read_one_per_line_blank_lines_and_line_ends_aside(tmp_path: Path) -> None:
    path = keys_file(tmp_path, f"{API_KEY}\r\n\n  {OTHER_KEY}  \n")
    config = parse_config(with_credentials(security={"api_keys_file": str(path)}), environ={})
    assert config.security.api_keys == (Secret(API_KEY), Secret(OTHER_KEY))
    assert config.security.api_keys_file == str(path)
    assert API_KEY not in repr(config)


def test_api_keys_and_api_keys_file_together_are_an_error_naming_the_key(tmp_path: Path) -> None:
    path = keys_file(tmp_path, OTHER_KEY)
    raw = with_credentials(security={"api_keys": [API_KEY], "api_keys_file": str(path)})
    message = config_error(parse_config, raw, environ={})
    assert message.startswith("security.api_keys_file:")
    assert "api_keys" in message
    assert_absent({API_KEY, OTHER_KEY}, message)


@pytest.mark.parametrize("problem", ["missing", "empty", "blank", "directory", "not-utf8"])
def test_an_unusable_keys_file_is_an_error_naming_it(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "api-keys"
    if problem == "empty":
        path.write_text("", encoding="utf-8")
    elif problem == "blank":
        path.write_text("\n  \n", encoding="utf-8")
    elif problem == "directory":
        path.mkdir()
    elif problem == "not-utf8":
        path.write_bytes(b"\xff\xfe" + API_KEY.encode())
    raw = with_credentials(security={"api_keys_file": str(path)})
    message = config_error(parse_config, raw, environ={})
    assert message.startswith("security.api_keys_file:")
    assert str(path) in message
    assert API_KEY not in message


def test_a_profile_may_name_its_own_keys_either_way(tmp_path: Path) -> None:
    path = keys_file(tmp_path, OTHER_KEY)
    raw: dict[str, Any] = with_credentials(
        security={"api_keys_file": str(path)},
        profiles={
            "retail": {"listen": {"port": 8081}, "security": {"api_keys": [API_KEY]}},
            "media": {"listen": {"port": 8082}},
        },
    )
    config = parse_config(raw, environ={})
    assert config.security.api_keys == (Secret(OTHER_KEY),)
    assert config.profile("retail").security.api_keys == (Secret(API_KEY),)
    assert config.profile("retail").security.api_keys_file is None
    assert config.profile("media").security.api_keys == (Secret(OTHER_KEY),)


async def test_an_unreadable_keys_file_is_a_one_line_error_of_the_command(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-keys"
    config = tmp_path / "criteo-proxy.yaml"
    config.write_text(f"security:\n  api_keys_file: {missing}\n", encoding="utf-8")
    result = await run_cli("--config", str(config), "--port", "0", env=demo_env())
    assert_one_line_error(result, 2, "security.api_keys_file", str(missing))


async def test_the_proxy_asks_for_a_key_from_the_file(
    start_proxy: StartProxy, tmp_path: Path
) -> None:
    path = keys_file(tmp_path, f"{API_KEY}\n{OTHER_KEY}\n")
    proxy = await start_proxy(security={"api_keys_file": str(path)})
    refused = await proxy.get("/2026-07/advertisers/me")
    assert refused.status == 401
    assert refused.headers["X-Criteo-Proxy-Error"] == "proxy_key_required"
    for key in (API_KEY, OTHER_KEY):
        answer = await proxy.get("/2026-07/advertisers/me", headers={"X-Proxy-Key": key})
        assert answer.status == 200
    assert (await proxy.get("/_proxy/health")).status == 200
