"""Profile configuration (DESIGN section 9): errors name their key, profiles inherit key by key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proxy.config.loader import parse_config
from proxy.config.schema import ConfigError
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from tests.conftest import assert_absent, assert_one_line_error, clean_env, run_cli

RETAIL_ID, RETAIL_SECRET = "retail-app", "retail-s3cret-41"
ADS_ID, ADS_SECRET = "ads-app", "ads-s3cret-77"
REDIRECT_URI = "https://app.example/cb"


# The error tests run against criteo_url, so they keep the fake the serving tests use.
@pytest.fixture
def criteo(clock: Any) -> FakeCriteo:
    """The fake knows three apps."""
    return FakeCriteo(
        clock=clock,
        clients={
            DEMO_CLIENT_ID: DEMO_CLIENT_SECRET,
            RETAIL_ID: RETAIL_SECRET,
            ADS_ID: ADS_SECRET,
        },
    )


def env(**extra: str) -> dict[str, str]:
    values = {
        "CRITEO_CLIENT_ID": DEMO_CLIENT_ID,
        "CRITEO_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "RETAIL_CLIENT_ID": RETAIL_ID,
        "RETAIL_CLIENT_SECRET": RETAIL_SECRET,
    }
    return clean_env(**{**values, **extra})


def write_config(path: Path, criteo_url: str, profiles: dict[str, Any], **top: Any) -> Path:
    """A config file (JSON is YAML) aimed at the fake, with PROFILES."""
    document = {"upstream": {"url": criteo_url}, **top, "profiles": profiles}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def retail(port: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "listen": {"port": port},
        "credentials": {
            "client_id": "${RETAIL_CLIENT_ID}",
            "client_secret": "${RETAIL_CLIENT_SECRET}",
        },
        **extra,
    }


def ads(store: Path, port: int = 0) -> dict[str, Any]:
    return {
        "listen": {"port": port},
        "credentials": {
            "grant_type": "authorization_code",
            "client_id": ADS_ID,
            "client_secret": ADS_SECRET,
            "redirect_uri": REDIRECT_URI,
            "token_store": str(store),
        },
    }


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
