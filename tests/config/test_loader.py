"""Configuration: YAML file + environment + flags -> Config (DESIGN §1).

parse_config and load_config are pure (no sockets), so they are tested directly.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trustme

from proxy.config.loader import load_config, parse_config
from proxy.config.schema import Config, ConfigError, Secret

SECRET = "file-s3cret-e9b1c7"
API_KEY = "inbound-key-5d0a88"
ENV = {"CRITEO_CLIENT_ID": "env-id", "CRITEO_CLIENT_SECRET": "env-s3cret-0c4f"}

# The schema exactly as DESIGN.md §1 shows it.
DESIGN_YAML = """\
listen:
  host: 127.0.0.1
  port: 8080                 # 0 = any free port, printed at start
  unix_socket: null          # serve on this socket path (0600) instead of TCP
  shutdown_grace: 30         # seconds in-flight requests may finish after SIGTERM
  header_timeout: 10         # seconds a client has to send its request headers
upstream:
  url: https://api.criteo.com
  token_url: null            # default: {url}/oauth2/token
  connect_timeout: 10        # seconds
  response_timeout: 120      # seconds until the response headers arrive
  read_timeout: 300          # idle seconds between two body chunks
  max_connections: 100
  ca_file: null              # extra CA bundle for the upstream leg
credentials:
  grant_type: client_credentials   # or authorization_code
  client_id: ${CRITEO_CLIENT_ID}   # ${VAR} is replaced from the environment
  client_secret: ${CRITEO_CLIENT_SECRET}
  client_secret_file: null   # read the secret from a file instead
  redirect_uri: null         # authorization_code only
  token_store: ~/.config/criteo-proxy/tokens.json   # authorization_code only
tokens:
  refresh_margin: 60         # renew this many seconds before expiry
retry:
  body_limit: 10485760       # bytes buffered so that a 401 can be retried
limits:
  max_body_bytes: null       # 413 above this; null = no limit
rate_limit:
  enabled: true
  max_wait: 30               # seconds a request may wait for Criteo's window
security:
  allowed_hosts: [localhost, 127.0.0.1, "[::1]"]
  allowed_origins: []
  read_only: false
  allow_paths: []            # regexes; empty = all
  deny_paths: []             # regexes
  api_keys: []               # when set, X-Proxy-Key is required
logging:
  level: info                # debug | info | warning | error
  format: text               # text | json
  access_log: true
"""


def with_credentials(**sections: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"credentials": {"client_id": "cid", "client_secret": SECRET}}
    for name, section in sections.items():
        if name == "credentials" and isinstance(section, dict):
            raw["credentials"] = {**raw["credentials"], **section}
        else:
            raw[name] = section
    return raw


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def config_error(call: Any, *args: Any, **kwargs: Any) -> str:
    """The ConfigError's message, checked for the house rules: one line, no secret."""
    with pytest.raises(ConfigError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert message
    assert message.strip() == message
    for secret in (SECRET, API_KEY, ENV["CRITEO_CLIENT_SECRET"]):
        assert secret not in message
    return message


# --- defaults --------------------------------------------------------------------------


def assert_design_defaults(config: Config) -> None:
    listen, upstream, security, logging = (
        config.listen,
        config.upstream,
        config.security,
        config.logging,
    )
    assert (listen.host, listen.port, listen.unix_socket) == ("127.0.0.1", 8080, None)
    assert (listen.shutdown_grace, listen.header_timeout) == (30, 10)
    assert upstream.url == "https://api.criteo.com"
    assert upstream.token_url is None
    assert upstream.effective_token_url == "https://api.criteo.com/oauth2/token"
    assert (upstream.connect_timeout, upstream.response_timeout, upstream.read_timeout) == (
        10,
        120,
        300,
    )
    assert upstream.max_connections == 100
    assert upstream.ca_file is None
    credentials = config.credentials
    assert credentials.grant_type == "client_credentials"
    assert credentials.client_secret_file is None
    assert credentials.redirect_uri is None
    assert credentials.token_store == os.path.expanduser("~/.config/criteo-proxy/tokens.json")
    assert config.tokens.refresh_margin == 60
    assert config.retry.body_limit == 10485760
    assert config.limits.max_body_bytes is None
    assert (config.rate_limit.enabled, config.rate_limit.max_wait) == (True, 30)
    assert security.allowed_hosts == ("localhost", "127.0.0.1", "[::1]")
    assert security.allowed_origins == ()
    assert security.read_only is False
    assert (security.allow_paths, security.deny_paths, security.api_keys) == ((), (), ())
    assert (logging.level, logging.format, logging.access_log) == ("info", "text", True)


def test_without_a_file_every_default_holds_and_credentials_come_from_the_environment() -> None:
    config = load_config(None, environ=ENV)
    assert_design_defaults(config)
    assert config.credentials.client_id == "env-id"
    assert config.credentials.client_secret.reveal() == ENV["CRITEO_CLIENT_SECRET"]
    assert config.source is None


def test_the_design_yaml_parses_to_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, DESIGN_YAML)
    config = load_config(path, environ=ENV)
    assert_design_defaults(config)
    assert config.credentials.client_id == "env-id"
    assert config.credentials.client_secret.reveal() == ENV["CRITEO_CLIENT_SECRET"]
    assert config.source == path


# DESIGN.md sections 8 and 10, as they show them.
DESIGN_CONSOLE_AND_RETRY_YAML = """\
console:
  enabled: true
  history: 200               # requests kept in memory
  error_bodies: true         # keep Criteo's JSON error bodies (<= 8 KiB) of failed requests
retry:
  body_limit: 10485760
  transient:
    attempts: 2              # extra tries after the first; 0 = off
    statuses: [502, 503, 504]
    methods: [GET, HEAD, OPTIONS, PUT, DELETE]   # idempotent (RFC 9110 9.2.2)
    max_delay: 10            # seconds: the most a request waits between tries in total
"""


def test_the_console_and_transient_retry_sections_of_design_parse_to_the_defaults(
    tmp_path: Path,
) -> None:
    config = load_config(write(tmp_path, DESIGN_CONSOLE_AND_RETRY_YAML), environ=ENV)
    defaults = load_config(None, environ=ENV)
    assert config.console == defaults.console
    assert config.retry == defaults.retry
    assert config.retry.transient.attempts == 2
    assert config.retry.transient.statuses == (502, 503, 504)
    assert config.retry.transient.methods == ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
    assert config.retry.transient.max_delay == 10
    assert (config.console.enabled, config.console.history, config.console.error_bodies) == (
        True,
        200,
        True,
    )


def test_config_example_yaml_parses_to_the_defaults() -> None:
    example = Path(__file__).resolve().parent.parent.parent / "config.example.yaml"
    config = load_config(str(example), environ=ENV)
    defaults = load_config(None, environ=ENV)
    for section in ("listen", "upstream", "tokens", "retry", "limits", "rate_limit", "console"):
        assert getattr(config, section) == getattr(defaults, section), section


def test_every_key_of_the_schema_is_read_from_the_file(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    path = write(
        tmp_path,
        f"""\
        listen:
          host: 127.0.0.2
          port: 0
          unix_socket: /tmp/criteo-proxy.sock
          shutdown_grace: 5
          header_timeout: 2.5
        upstream:
          url: http://127.0.0.1:9999/
          token_url: http://127.0.0.1:9998/oauth2/token
          connect_timeout: 1
          response_timeout: 2
          read_timeout: 3
          max_connections: 7
          ca_file: {ca_path}
        credentials:
          grant_type: authorization_code
          client_id: file-id
          client_secret: {SECRET}
          client_secret_file: null
          redirect_uri: https://localhost/callback
          token_store: ~/elsewhere/tokens.json
        tokens:
          refresh_margin: 30
        retry:
          body_limit: 0
        limits:
          max_body_bytes: 1000
        rate_limit:
          enabled: false
          max_wait: 0
        security:
          allowed_hosts: [proxy.internal]
          allowed_origins: ["http://localhost:3000"]
          read_only: true
          allow_paths: ["^/2025-10/"]
          deny_paths: ["/audiences"]
          api_keys: [{API_KEY}]
        logging:
          level: debug
          format: json
          access_log: false
        """,
    )
    config = load_config(path, environ={})
    assert config.listen.host == "127.0.0.2"
    assert config.listen.port == 0
    assert config.listen.unix_socket == "/tmp/criteo-proxy.sock"
    assert (config.listen.shutdown_grace, config.listen.header_timeout) == (5, 2.5)
    assert config.upstream.url == "http://127.0.0.1:9999"  # trailing slash dropped
    assert config.upstream.effective_token_url == "http://127.0.0.1:9998/oauth2/token"
    assert (
        config.upstream.connect_timeout,
        config.upstream.response_timeout,
        config.upstream.read_timeout,
    ) == (1, 2, 3)
    assert config.upstream.max_connections == 7
    assert config.upstream.ca_file == str(ca_path)
    credentials = config.credentials
    assert credentials.grant_type == "authorization_code"
    assert credentials.client_id == "file-id"
    assert credentials.client_secret == Secret(SECRET)
    assert credentials.redirect_uri == "https://localhost/callback"
    assert credentials.token_store == os.path.expanduser("~/elsewhere/tokens.json")
    assert config.tokens.refresh_margin == 30
    assert config.retry.body_limit == 0
    assert config.limits.max_body_bytes == 1000
    assert (config.rate_limit.enabled, config.rate_limit.max_wait) == (False, 0)
    assert config.security.allowed_hosts == ("proxy.internal",)
    assert config.security.allowed_origins == ("http://localhost:3000",)
    assert config.security.read_only is True
    assert config.security.allow_paths == ("^/2025-10/",)
    assert config.security.deny_paths == ("/audiences",)
    assert config.security.api_keys == (Secret(API_KEY),)
    assert (config.logging.level, config.logging.format, config.logging.access_log) == (
        "debug",
        "json",
        False,
    )


def test_upstream_url_with_a_trailing_slash_gives_the_default_token_url() -> None:
    config = parse_config(with_credentials(upstream={"url": "https://api.criteo.com/"}), environ={})
    assert config.upstream.url == "https://api.criteo.com"
    assert config.upstream.effective_token_url == "https://api.criteo.com/oauth2/token"


def test_empty_file_and_empty_sections_mean_defaults(tmp_path: Path) -> None:
    assert_design_defaults(load_config(write(tmp_path, "# nothing\n"), environ=ENV))
    path = write(tmp_path, "listen:\nupstream:\n  # url: x\nsecurity: {}\n", "sections.yaml")
    assert_design_defaults(load_config(path, environ=ENV))


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


# --- credentials: environment, file -----------------------------------------------------


def test_environment_credentials_override_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        credentials:
          client_id: file-id
          client_secret: {SECRET}
        """,
    )
    config = load_config(path, environ=ENV)
    assert config.credentials.client_id == "env-id"
    assert config.credentials.client_secret.reveal() == ENV["CRITEO_CLIENT_SECRET"]
    # Without the environment the file's own values are used.
    config = load_config(path, environ={})
    assert config.credentials.client_id == "file-id"
    assert config.credentials.client_secret.reveal() == SECRET


def test_client_secret_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    raw = {"credentials": {"client_id": "cid", "client_secret_file": str(secret_file)}}
    config = parse_config(raw, environ={})
    assert config.credentials.client_secret.reveal() == SECRET
    # The environment still wins over the file for the secret.
    env_config = parse_config(raw, environ={"CRITEO_CLIENT_SECRET": "from-env"})
    assert env_config.credentials.client_secret.reveal() == "from-env"


def test_client_secret_and_client_secret_file_together_are_an_error(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET, encoding="utf-8")
    raw = with_credentials(credentials={"client_secret_file": str(secret_file)})
    message = config_error(parse_config, raw, environ={})
    assert message.startswith("credentials")
    assert "client_secret_file" in message


@pytest.mark.parametrize("problem", ["missing", "empty", "blank", "directory"])
def test_unusable_client_secret_file_is_an_error_naming_it(tmp_path: Path, problem: str) -> None:
    secret_file = tmp_path / "secret"
    if problem == "empty":
        secret_file.write_text("", encoding="utf-8")
    elif problem == "blank":
        secret_file.write_text("\n  \n", encoding="utf-8")
    elif problem == "directory":
        secret_file.mkdir()
    raw = {"credentials": {"client_id": "cid", "client_secret_file": str(secret_file)}}
    message = config_error(parse_config, raw, environ={})
    assert message.startswith("credentials.client_secret_file:")
    assert str(secret_file) in message


def test_missing_client_id_names_the_environment_variable() -> None:
    message = config_error(parse_config, {}, environ={"CRITEO_CLIENT_SECRET": SECRET})
    assert message.startswith("credentials.client_id:")
    assert "CRITEO_CLIENT_ID" in message


def test_missing_client_secret_names_the_environment_variable() -> None:
    message = config_error(parse_config, {}, environ={"CRITEO_CLIENT_ID": "cid"})
    assert message.startswith("credentials.client_secret:")
    assert "CRITEO_CLIENT_SECRET" in message


def test_no_file_and_no_environment_is_an_error() -> None:
    message = config_error(load_config, None, environ={})
    assert "CRITEO_CLIENT_ID" in message


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


# --- the file itself ---------------------------------------------------------------------


def test_missing_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    message = config_error(load_config, path, environ=ENV)
    assert message.startswith(path)


def test_directory_as_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    message = config_error(load_config, str(tmp_path), environ=ENV)
    assert str(tmp_path) in message


def test_invalid_yaml_is_an_error_with_the_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, "listen:\n  port: 8080\n\thost: x\n")
    message = config_error(load_config, path, environ=ENV)
    assert message.startswith(path)
    assert "line 3" in message


def test_invalid_yaml_never_echoes_a_secret_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"credentials:\n  client_secret: {SECRET}\n  client_id: [unclosed\n")
    config_error(load_config, path, environ=ENV)


def test_top_level_list_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "- listen\n- upstream\n")
    message = config_error(load_config, path, environ=ENV)
    assert message.startswith(path)
    assert "mapping" in message


def test_non_utf8_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"listen:\n  host: caf\xe9\n")
    message = config_error(load_config, str(path), environ=ENV)
    assert message.startswith(str(path))


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


# --- flags and CRITEO_PROXY_CONFIG ---------------------------------------------------------


FILE_WITH_LISTEN = """\
listen:
  host: 127.0.0.1
  port: 8080
upstream:
  url: https://api.criteo.com
logging:
  level: info
  format: text
"""

FLAGS = {
    "listen.host": "::1",
    "listen.port": 9000,
    "upstream.url": "http://127.0.0.1:9001",
    "upstream.token_url": "http://127.0.0.1:9002/oauth2/token",
    "logging.level": "debug",
    "logging.format": "json",
}


def assert_flags_applied(config: Config) -> None:
    assert (config.listen.host, config.listen.port) == ("::1", 9000)
    assert config.upstream.url == "http://127.0.0.1:9001"
    assert config.upstream.effective_token_url == "http://127.0.0.1:9002/oauth2/token"
    assert (config.logging.level, config.logging.format) == ("debug", "json")


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, FILE_WITH_LISTEN)
    config = load_config(path, environ=ENV, overrides=FLAGS)
    assert_flags_applied(config)


def test_flags_apply_without_a_file() -> None:
    assert_flags_applied(load_config(None, environ=ENV, overrides=FLAGS))


def test_flags_apply_to_a_section_left_empty_in_the_file(tmp_path: Path) -> None:
    """``listen:`` with every key commented out is an empty section, like no section."""
    path = write(tmp_path, "listen:\n  # port: 8080\nupstream:\nlogging:\n")
    assert_flags_applied(load_config(path, environ=ENV, overrides=FLAGS))


def test_flag_values_are_validated_like_file_values() -> None:
    message = config_error(load_config, None, environ=ENV, overrides={"listen.port": 70000})
    assert message.startswith("listen.port:")
    message = config_error(load_config, None, environ=ENV, overrides={"upstream.url": "nope"})
    assert message.startswith("upstream.url:")


def test_criteo_proxy_config_names_the_file_when_no_path_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, "listen:\n  port: 8181\n")
    config = load_config(None, environ={**ENV, "CRITEO_PROXY_CONFIG": path})
    assert config.listen.port == 8181
    assert config.source == path


def test_an_explicit_path_wins_over_criteo_proxy_config(tmp_path: Path) -> None:
    from_env = write(tmp_path, "listen:\n  port: 8181\n", "env.yaml")
    explicit = write(tmp_path, "listen:\n  port: 8282\n", "explicit.yaml")
    config = load_config(explicit, environ={**ENV, "CRITEO_PROXY_CONFIG": from_env})
    assert config.listen.port == 8282


def test_missing_file_named_by_criteo_proxy_config_is_an_error(tmp_path: Path) -> None:
    path = str(tmp_path / "gone.yaml")
    message = config_error(load_config, None, environ={**ENV, "CRITEO_PROXY_CONFIG": path})
    assert path in message


# --- secrets never show ------------------------------------------------------------------------


def test_repr_and_str_of_a_config_never_show_the_secret_or_api_keys(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file-s3cret\n", encoding="utf-8")
    configs = [
        parse_config(with_credentials(security={"api_keys": [API_KEY]}), environ={}),
        parse_config(
            {"credentials": {"client_id": "cid", "client_secret_file": str(secret_file)}},
            environ={},
        ),
        load_config(None, environ=ENV),
    ]
    for config in configs:
        for text in (repr(config), str(config), repr(config.credentials), str(config.security)):
            for secret in (SECRET, API_KEY, "from-a-file-s3cret", ENV["CRITEO_CLIENT_SECRET"]):
                assert secret not in text
    assert "***" in repr(configs[0].credentials)


def test_secret_is_redacted_everywhere_but_reveal() -> None:
    secret = Secret(SECRET)
    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        "%s" % secret,  # noqa: UP031 - the old formatting path, as logging uses
        "%r" % secret,  # noqa: UP031
        format(secret, ""),
        repr([secret]),
        repr({"k": secret}),
    ]
    for text in shown:
        assert SECRET not in text
        assert "***" in text
    assert repr(secret) == "Secret('***')"
    assert secret.reveal() == SECRET
    assert secret == Secret(SECRET)
    assert secret != Secret("other")
    assert secret != SECRET  # never equal to the bare string, so no accidental comparisons
    assert secret
    assert not Secret("")


def test_a_redirect_uri_may_carry_a_query() -> None:
    """RFC 6749 3.1.2: a query is allowed (and kept as written); a fragment is not."""
    uri = "https://app.example/cb?tenant=acme%20corp&lang=fr"
    config = parse_config(with_credentials(credentials={"redirect_uri": uri}), environ={})
    assert config.credentials.redirect_uri == uri


def test_a_url_with_user_info_is_refused_without_showing_it() -> None:
    """A password in upstream.url would otherwise break every request (and leak in errors)."""
    raw = with_credentials(upstream={"url": "https://user:hunter2-pw@api.criteo.com"})
    message = config_error(parse_config, raw, environ={})
    assert message.startswith("upstream.url:")
    assert "hunter2-pw" not in message
