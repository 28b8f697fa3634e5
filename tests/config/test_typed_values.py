"""``${VAR}`` in the config's values: expanded from the environment, or an error naming both."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config.loader import parse_config
from tests.config.conftest import config_error, with_credentials

# --- ${VAR} ------------------------------------------------------------------------------


def test_env_references_are_expanded_in_strings_and_list_items() -> None:
    raw = with_credentials(
        upstream={"url": "http://${UP_HOST}:${UP_PORT}"},
        credentials={"client_id": "${APP}-prod"},
        security={"allowed_hosts": ["${SERVICE}", "localhost"]},
    )
    environ = {"UP_HOST": "127.0.0.1", "UP_PORT": "9000", "APP": "shop", "SERVICE": "proxy"}
    config = parse_config(raw, environ=environ)
    assert config.upstream.url == "http://127.0.0.1:9000"
    assert config.credentials.client_id == "shop-prod"
    assert config.security.allowed_hosts == ("proxy", "localhost")


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (with_credentials(credentials={"client_id": "${NOT_SET_ID}"}), "credentials.client_id"),
        (with_credentials(upstream={"url": "https://${NOT_SET_ID}"}), "upstream.url"),
        (
            with_credentials(security={"allowed_hosts": ["ok", "${NOT_SET_ID}"]}),
            "security.allowed_hosts[1]",
        ),
    ],
)
def test_unset_env_reference_is_an_error_naming_the_key_and_the_variable(
    raw: dict[str, Any], key: str
) -> None:
    message = config_error(parse_config, raw, environ={})
    assert message.startswith(f"{key}:")
    assert "NOT_SET_ID" in message


def test_unset_secret_reference_names_the_variable_not_a_value() -> None:
    raw = {"credentials": {"client_id": "cid", "client_secret": "${MY_SECRET}"}}
    message = config_error(parse_config, raw, environ={})
    assert message.startswith("credentials.client_secret:")
    assert "MY_SECRET" in message
