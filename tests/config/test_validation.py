"""The config's rules: every bad value is a one-line error naming its key, never a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.config.loader import load_config, parse_config
from tests.config.conftest import API_KEY, SECRET, config_error, with_credentials, write

# --- every error names its key -----------------------------------------------------------


BAD_VALUES = [
    # pytest.param(sections, the key the message must start with, id=...)
    pytest.param(
        {"security": {"allowed_hosts": ["localhost", "http://criteo-proxy/"]}},
        "security.allowed_hosts[1]",
        id="allowed host that is a URL",
    ),
    pytest.param({"listn": {"port": 1}}, "listn", id="unknown top-level key"),
    pytest.param(
        {"upstream": {"respnse_timeout": 5}}, "upstream.respnse_timeout", id="unknown nested key"
    ),
    pytest.param(
        {"credentials": {"client_secert": SECRET}},
        "credentials.client_secert",
        id="unknown credentials key",
    ),
    pytest.param({"security": "none"}, "security", id="section is a string"),
    pytest.param({"listen": [8080]}, "listen", id="section is a list"),
    pytest.param(
        {"upstream": {"response_timeout": "10"}},
        "upstream.response_timeout",
        id="string for a number",
    ),
    pytest.param({"listen": {"port": "8080"}}, "listen.port", id="string for a port"),
    pytest.param({"rate_limit": {"enabled": 1}}, "rate_limit.enabled", id="number for a bool"),
    pytest.param({"logging": {"access_log": "yes"}}, "logging.access_log", id="string for a bool"),
    pytest.param({"listen": {"port": True}}, "listen.port", id="bool for an int"),
    pytest.param(
        {"upstream": {"max_connections": True}}, "upstream.max_connections", id="bool for a count"
    ),
    pytest.param(
        {"upstream": {"read_timeout": False}}, "upstream.read_timeout", id="bool for seconds"
    ),
    pytest.param({"retry": {"body_limit": 10.5}}, "retry.body_limit", id="fraction for an int"),
    pytest.param(
        {"security": {"allowed_hosts": {"a": "b"}}},
        "security.allowed_hosts",
        id="mapping for a list",
    ),
    pytest.param(
        {"security": {"allow_paths": "^/x"}}, "security.allow_paths", id="string for a list"
    ),
    pytest.param(
        {"security": {"allow_paths": [5]}}, "security.allow_paths[0]", id="number in a list"
    ),
    pytest.param(
        {"upstream": {"url": ["https://api.criteo.com"]}}, "upstream.url", id="list for a string"
    ),
    pytest.param(
        {"credentials": {"client_secret": 12345}},
        "credentials.client_secret",
        id="number for the secret",
    ),
    pytest.param({"upstream": {"url": "api.criteo"}}, "upstream.url", id="url without scheme"),
    pytest.param(
        {"upstream": {"url": "ftp://api.criteo.com"}}, "upstream.url", id="url with ftp scheme"
    ),
    pytest.param(
        {"upstream": {"url": "https://api.criteo.com/?x=1"}}, "upstream.url", id="url with a query"
    ),
    pytest.param(
        {"upstream": {"token_url": "oauth2/token"}}, "upstream.token_url", id="bad token url"
    ),
    pytest.param({"listen": {"port": 65536}}, "listen.port", id="port too high"),
    pytest.param({"listen": {"port": -1}}, "listen.port", id="port negative"),
    pytest.param({"listen": {"host": ""}}, "listen.host", id="empty host"),
    pytest.param(
        {"upstream": {"connect_timeout": -1}},
        "upstream.connect_timeout",
        id="negative connect timeout",
    ),
    pytest.param(
        {"upstream": {"response_timeout": 0}},
        "upstream.response_timeout",
        id="zero response timeout",
    ),
    pytest.param(
        {"upstream": {"read_timeout": -0.5}}, "upstream.read_timeout", id="negative read timeout"
    ),
    pytest.param(
        {"listen": {"header_timeout": -1}}, "listen.header_timeout", id="negative header timeout"
    ),
    pytest.param({"listen": {"shutdown_grace": -1}}, "listen.shutdown_grace", id="negative grace"),
    pytest.param(
        {"upstream": {"max_connections": 0}}, "upstream.max_connections", id="zero connections"
    ),
    pytest.param({"tokens": {"refresh_margin": -1}}, "tokens.refresh_margin", id="negative margin"),
    pytest.param({"retry": {"body_limit": -1}}, "retry.body_limit", id="negative body limit"),
    pytest.param(
        {"retry": {"transient": {"atempts": 1}}},
        "retry.transient.atempts",
        id="unknown transient key",
    ),
    pytest.param({"retry": {"transient": [1]}}, "retry.transient", id="transient is not a mapping"),
    pytest.param(
        {"retry": {"transient": {"attempts": -1}}},
        "retry.transient.attempts",
        id="negative attempts",
    ),
    pytest.param(
        {"retry": {"transient": {"attempts": 11}}},
        "retry.transient.attempts",
        id="too many attempts",
    ),
    pytest.param(
        {"retry": {"transient": {"statuses": [503, 429]}}},
        "retry.transient.statuses[1]",
        id="429 keeps its own rule",
    ),
    pytest.param(
        {"retry": {"transient": {"statuses": [200]}}},
        "retry.transient.statuses[0]",
        id="a success is no failure",
    ),
    pytest.param(
        {"retry": {"transient": {"methods": ["get"]}}},
        "retry.transient.methods[0]",
        id="lower-case method",
    ),
    pytest.param(
        {"retry": {"transient": {"max_delay": -1}}},
        "retry.transient.max_delay",
        id="negative max delay",
    ),
    pytest.param({"console": {"history": -1}}, "console.history", id="negative console history"),
    pytest.param({"console": {"enabled": "no"}}, "console.enabled", id="string for a bool"),
    pytest.param({"limits": {"max_body_bytes": 0}}, "limits.max_body_bytes", id="zero max body"),
    pytest.param({"rate_limit": {"max_wait": -1}}, "rate_limit.max_wait", id="negative max wait"),
    pytest.param(
        {"security": {"allow_paths": ["^/ok", "("]}},
        "security.allow_paths[1]",
        id="bad allow regex",
    ),
    pytest.param(
        {"security": {"deny_paths": ["[a-"]}}, "security.deny_paths[0]", id="bad deny regex"
    ),
    pytest.param(
        {"security": {"allowed_origins": ["localhost:3000"]}},
        "security.allowed_origins[0]",
        id="origin without scheme",
    ),
    pytest.param(
        {"security": {"allowed_origins": ["http://localhost:3000/app"]}},
        "security.allowed_origins[0]",
        id="origin with a path",
    ),
    pytest.param(
        {"security": {"allowed_origins": ["https://xn--a.example"]}},
        "security.allowed_origins[0]",
        id="origin with bad punycode",
    ),
    pytest.param(
        {"security": {"allowed_hosts": ["xn--a.example:99999"]}},
        "security.allowed_hosts[0]",
        id="allowed host with a port out of range",
    ),
    pytest.param(
        {"upstream": {"url": "https://xn--a.example"}}, "upstream.url", id="url with bad punycode"
    ),
    pytest.param(
        {"upstream": {"token_url": "https://xn--/oauth2/token"}},
        "upstream.token_url",
        id="token url with bad punycode",
    ),
    pytest.param(
        {"credentials": {"redirect_uri": "https://app.example/cb?x=1#top"}},
        "credentials.redirect_uri",
        id="redirect uri with a fragment",
    ),
    pytest.param(
        {"credentials": {"redirect_uri": "https://xn--a.example/cb"}},
        "credentials.redirect_uri",
        id="redirect uri with bad punycode",
    ),
    pytest.param(
        {"security": {"api_keys": [API_KEY, ""]}}, "security.api_keys[1]", id="empty api key"
    ),
    pytest.param(
        {"credentials": {"grant_type": "password"}},
        "credentials.grant_type",
        id="grant type not supported",
    ),
    pytest.param({"logging": {"level": "verbose"}}, "logging.level", id="log level unknown"),
    pytest.param({"logging": {"format": "xml"}}, "logging.format", id="log format unknown"),
]


@pytest.mark.parametrize(("sections", "key"), BAD_VALUES)
def test_bad_value_is_a_one_line_error_naming_the_key_without_the_secret(
    sections: dict[str, Any], key: str
) -> None:
    raw = with_credentials(security={"api_keys": [API_KEY]})
    raw.update(with_credentials(**sections))
    message = config_error(parse_config, raw, environ={})
    assert message.startswith(f"{key}:"), message


def test_unknown_key_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "credentials:\n  client_id: a\n  client_secret: b\nlogs: {}\n")
    message = config_error(load_config, path, environ={})
    assert message.startswith("logs:")
    assert path in message


def test_a_typo_never_falls_back_to_the_default() -> None:
    raw = with_credentials(upstream={"respnse_timeout": 5})
    message = config_error(parse_config, raw, environ={})
    assert "unknown key" in message


# --- upstream.ca_file and credentials.redirect_uri --------------------------------------


def test_missing_ca_file_is_an_error_naming_it(tmp_path: Path) -> None:
    ca_path = str(tmp_path / "missing-ca.pem")
    raw = with_credentials(upstream={"ca_file": ca_path})
    message = config_error(parse_config, raw, environ={})
    assert message.startswith("upstream.ca_file:")
    assert ca_path in message


def test_ca_file_without_a_pem_certificate_is_an_error(tmp_path: Path) -> None:
    ca_path = tmp_path / "not-a-ca.pem"
    ca_path.write_text("this is not a certificate\n", encoding="utf-8")
    raw = with_credentials(upstream={"ca_file": str(ca_path)})
    message = config_error(parse_config, raw, environ={})
    assert message.startswith("upstream.ca_file:")
    assert str(ca_path) in message
    assert "PEM" in message


def test_a_redirect_uri_may_carry_a_query() -> None:
    """RFC 6749 3.1.2: a query is allowed (and kept as written); a fragment is not."""
    uri = "https://app.example/cb?tenant=acme%20corp&lang=fr"
    config = parse_config(with_credentials(credentials={"redirect_uri": uri}), environ={})
    assert config.credentials.redirect_uri == uri
