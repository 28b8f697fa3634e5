"""Configuration errors through ``run`` and ``check``: one line naming the key or file."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.fakes.criteo import DEMO_CLIENT_ID, FakeCriteo
from tests.cli.conftest import make_secret
from tests.conftest import CliResult, assert_absent, assert_one_line_error, clean_env, run_cli

# --- configuration errors through the real command -------------------------------------


@dataclass(frozen=True)
class ConfigErrorCase:
    """``{upstream}``, ``{config}``, ``{secret}`` and ``{port}`` are filled in."""

    args: tuple[str, ...]
    fragments: tuple[str, ...]  # each must appear in the one stderr line
    file_text: str | None = None
    credentials: bool = True  # CRITEO_CLIENT_ID / CRITEO_CLIENT_SECRET in the environment
    for_check: bool = True  # the case applies to `check` too


# The servers never get far enough to talk to anything, but are aimed at loopback anyway.
_SAFE = ("--upstream", "{upstream}", "--port", "0")

CONFIG_ERRORS = {
    "unknown-section": ConfigErrorCase(
        ("--config", "{config}", "--port", "0"),
        ("upstrem", "unknown key", "{config}"),
        file_text="upstrem:\n  url: {upstream}\ncredentials:\n  client_secret: {secret}\n",
    ),
    "unknown-nested-key": ConfigErrorCase(
        ("--config", "{config}", *_SAFE),
        ("upstream.respnse_timeout", "unknown key"),
        file_text="upstream:\n  respnse_timeout: 5\ncredentials:\n  client_secret: {secret}\n",
    ),
    "wrong-type": ConfigErrorCase(
        ("--config", "{config}", "--upstream", "{upstream}"),
        ("listen.port", "whole number"),
        file_text="listen:\n  port: eighty\n",
    ),
    "secret-of-wrong-type": ConfigErrorCase(
        ("--config", "{config}", *_SAFE),
        ("credentials.client_secret",),
        file_text="credentials:\n  client_secret: [{secret}]\n",
        credentials=False,
    ),
    "bad-upstream-url": ConfigErrorCase(
        ("--upstream", "api.criteo", "--port", "0"), ("upstream.url", "api.criteo")
    ),
    "origin-with-bad-punycode": ConfigErrorCase(
        ("--config", "{config}", *_SAFE),
        ("security.allowed_origins[0]", "xn--a.example"),
        file_text='security:\n  allowed_origins: ["https://xn--a.example"]\n',
    ),
    "upstream-with-bad-punycode": ConfigErrorCase(
        ("--upstream", "https://xn--a.example", "--port", "0"), ("upstream.url",)
    ),
    "missing-credentials": ConfigErrorCase(_SAFE, ("CRITEO_CLIENT_ID",), credentials=False),
    "missing-config-file": ConfigErrorCase(
        ("--config", "/nonexistent.yaml", *_SAFE), ("/nonexistent.yaml",)
    ),
    "invalid-yaml": ConfigErrorCase(
        ("--config", "{config}", *_SAFE),
        ("{config}", "YAML"),
        file_text="credentials:\n  client_secret: {secret}\nupstream: [unclosed\n",
    ),
    "port-in-use": ConfigErrorCase(
        ("--upstream", "{upstream}", "--port", "{port}"),
        ("{port}", "listen.port"),
        for_check=False,
    ),
    "port-not-a-number": ConfigErrorCase(("--upstream", "{upstream}", "--port", "abc"), ("abc",)),
    "unknown-log-format": ConfigErrorCase((*_SAFE, "--log-format", "xml"), ("xml",)),
}


async def run_config_error_case(
    case: ConfigErrorCase, subcommand: tuple[str, ...], criteo_url: str, tmp_path: Path
) -> tuple[CliResult, dict[str, str], str]:
    secret = make_secret()
    config_file = tmp_path / "criteo-proxy.yaml"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        fill = {
            "upstream": criteo_url,
            "config": str(config_file),
            "secret": secret,
            "port": str(busy.getsockname()[1]),
        }
        if case.file_text is not None:
            config_file.write_text(case.file_text.format(**fill), encoding="utf-8")
        credentials = {"CRITEO_CLIENT_ID": DEMO_CLIENT_ID, "CRITEO_CLIENT_SECRET": secret}
        env = clean_env(**(credentials if case.credentials else {}))
        result = await run_cli(*subcommand, *(a.format(**fill) for a in case.args), env=env)
    return result, fill, secret


@pytest.mark.parametrize("case", CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
async def test_run_config_error_exits_2_with_one_line_naming_the_key_or_file(
    case: ConfigErrorCase, criteo: FakeCriteo, criteo_url: str, tmp_path: Path
) -> None:
    result, fill, secret = await run_config_error_case(case, (), criteo_url, tmp_path)

    assert_one_line_error(result, 2, *(f.format(**fill) for f in case.fragments))
    assert "serving on" not in result.stdout
    assert_absent({secret}, result.stdout, result.stderr)
    assert criteo.requests == []


CHECK_CONFIG_ERRORS = {name: case for name, case in CONFIG_ERRORS.items() if case.for_check}


@pytest.mark.parametrize("case", CHECK_CONFIG_ERRORS.values(), ids=CHECK_CONFIG_ERRORS.keys())
async def test_check_config_error_exits_1_with_one_line_naming_the_key_or_file(
    case: ConfigErrorCase, criteo: FakeCriteo, criteo_url: str, tmp_path: Path
) -> None:
    result, fill, secret = await run_config_error_case(case, ("check",), criteo_url, tmp_path)

    assert_one_line_error(result, 1, *(f.format(**fill) for f in case.fragments))
    assert "OK" not in result.stdout.splitlines()
    assert_absent({secret}, result.stdout, result.stderr)
    assert criteo.token_requests == []
