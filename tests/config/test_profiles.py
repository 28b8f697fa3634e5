"""Profile configuration (DESIGN section 9): errors name their key, profiles inherit key by key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.config.loader import parse_config
from proxy.config.schema import ConfigError
from proxy.fakes.criteo import DEMO_CLIENT_SECRET, FakeCriteo
from tests.conftest import ManualClock, assert_absent, assert_one_line_error, run_cli
from tests.profile_apps import RETAIL_SECRET, ads, env, retail, three_app_criteo, write_config


# The error tests run against criteo_url, so they keep the fake the serving tests use.
@pytest.fixture
def criteo(clock: ManualClock) -> FakeCriteo:
    return three_app_criteo(clock)


PROFILE_ERRORS = {
    "port-used-twice": ({"retail": retail(8081), "ads": retail(8081)}, "profiles.ads.listen.port"),
    "port-of-default": ({"retail": retail(8080)}, "profiles.retail.listen.port"),
    "socket-used-twice": (
        {
            "a": {**retail(), "listen": {"unix_socket": "/tmp/x.sock"}},
            "b": {**retail(), "listen": {"unix_socket": "/tmp/x.sock"}},
        },
        "profiles.b.listen.unix_socket",
    ),
    "no-listen": ({"retail": {"credentials": {"client_id": "r"}}}, "profiles.retail.listen"),
    "shared-section": (
        {"retail": {**retail(8081), "upstream": {"url": "http://127.0.0.1:1"}}},
        "profiles.retail.upstream",
    ),
    "console-is-shared": (
        {"retail": {**retail(8081), "console": {"enabled": False}}},
        "profiles.retail.console",
    ),
    "bad-name": ({"Retail": retail(8081)}, "profiles.Retail"),
    "unknown-key": ({"retail": {**retail(8081), "tokenz": {}}}, "profiles.retail.tokenz"),
    "unknown-nested-key": (
        {"retail": {**retail(8081), "security": {"read_olny": True}}},
        "profiles.retail.security.read_olny",
    ),
    "bad-value": (
        {"retail": {**retail(8081), "rate_limit": {"max_wait": -1}}},
        "profiles.retail.rate_limit.max_wait",
    ),
    "one-store-for-two": (
        {
            "a": ads(Path("/tmp/shared-store.json"), 8081),
            "b": ads(Path("/tmp/shared-store.json"), 8082),
        },
        "profiles.b.credentials.token_store",
    ),
    "unset-variable": (
        {"retail": {**retail(8081), "credentials": {"client_id": "${NO_SUCH_VARIABLE}"}}},
        "profiles.retail.credentials.client_id",
    ),
}


@pytest.mark.parametrize(("profiles", "key"), PROFILE_ERRORS.values(), ids=PROFILE_ERRORS.keys())
async def test_a_profile_error_is_exit_2_with_one_line_naming_the_key(
    profiles: dict[str, Any], key: str, tmp_path: Path, criteo_url: str
) -> None:
    config = write_config(tmp_path / "proxy.yaml", criteo_url, profiles)
    result = await run_cli("--config", str(config), env=env())
    line = assert_one_line_error(result, 2, key)
    assert line.startswith(f"criteo-proxy: {key}"), line
    assert_absent({DEMO_CLIENT_SECRET, RETAIL_SECRET}, result.stdout, result.stderr)


def test_a_profile_starts_from_the_top_level_key_by_key() -> None:
    config = parse_config(
        {
            "credentials": {"client_id": "top", "client_secret": "s"},
            "security": {"read_only": True, "allowed_hosts": ["localhost", "proxy"]},
            "retry": {"transient": {"attempts": 1, "max_delay": 3}},
            "profiles": {
                "retail": {
                    "listen": {"port": 8081},
                    "security": {"read_only": False},
                    "retry": {"transient": {"attempts": 0}},
                    "credentials": {"client_secret_file": "/etc/hostname"},
                }
            },
        },
        environ={"CRITEO_CLIENT_ID": "env-id", "CRITEO_CLIENT_SECRET": "env-secret"},
    )
    top, profile = config.all_profiles
    assert top.credentials.client_id == "env-id"  # the environment is the default's
    assert profile.name == "retail"
    assert profile.credentials.client_id == "top"  # inherited from the file, not the env
    assert profile.credentials.client_secret.reveal() != "s"  # its own secret replaced it
    assert profile.security.read_only is False
    assert profile.security.allowed_hosts == ("localhost", "proxy")
    assert (profile.retry.transient.attempts, profile.retry.transient.max_delay) == (0, 3)
    assert profile.listen.port == 8081
    assert profile.credentials.token_store.endswith("tokens-retail.json")
    assert top.credentials.token_store.endswith("tokens.json")


def test_without_profiles_there_is_only_default() -> None:
    config = parse_config({"credentials": {"client_id": "a", "client_secret": "b"}}, environ={})
    assert [c.name for c in config.all_profiles] == ["default"]
    with pytest.raises(ConfigError, match="--profile: no profile named 'x'"):
        config.profile("x")
