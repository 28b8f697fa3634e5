"""The loader: YAML file + environment + flags -> Config (DESIGN §1), its defaults, its errors.

parse_config and load_config are pure (no sockets), so they are tested directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trustme

from proxy.config.loader import load_config, parse_config
from proxy.config.schema import Config, Secret
from tests.config.conftest import API_KEY, ENV, SECRET, config_error, with_credentials, write

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
          allow_paths: ["^/2026-07/"]
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
    assert config.security.allow_paths == ("^/2026-07/",)
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


# --- CRITEO_PROXY_HOST ------------------------------------------------------------------


def test_criteo_proxy_host_is_listen_host_unless_the_file_or_host_says_otherwise(
    tmp_path: Path,
) -> None:
    """The Docker image sets it to 0.0.0.0: `docker run IMAGE --log-format json` must not
    drop the address its published port needs, and a file's own host still wins."""
    env = {**ENV, "CRITEO_PROXY_HOST": "0.0.0.0"}
    assert load_config(environ=env).listen.host == "0.0.0.0"
    assert load_config(environ={**env, "CRITEO_PROXY_HOST": ""}).listen.host == "127.0.0.1"
    overridden = load_config(environ=env, overrides={"listen.host": "127.0.0.2"})
    assert overridden.listen.host == "127.0.0.2"
    port_only = write(tmp_path, "listen: {port: 9000}\n", "port.yaml")
    assert load_config(port_only, environ=env).listen.host == "0.0.0.0"
    loopback = write(tmp_path, "listen: {host: 127.0.0.1}\n", "loopback.yaml")
    assert load_config(loopback, environ=env).listen.host == "127.0.0.1"  # a sidecar's file
    profiles = write(
        tmp_path,
        """
        listen: {port: 8080}
        profiles:
          retail:
            listen: {port: 8081}
            credentials: {client_id: r, client_secret: s}
          local:
            listen: {port: 8082, host: 127.0.0.1}
            credentials: {client_id: l, client_secret: s}
        """,
        "profiles.yaml",
    )
    config = load_config(profiles, environ=env)
    assert [p.listen.host for p in config.all_profiles] == ["0.0.0.0", "0.0.0.0", "127.0.0.1"]
