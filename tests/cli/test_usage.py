"""Usage: ``--help`` documents the flags; an unknown flag or unusable --from-url is one line."""

from __future__ import annotations

import pytest

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from tests.conftest import assert_one_line_error, clean_env, run_cli

# --- help -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("--help",), ("check", "--help"), ("run", "--help"), ("token", "--help")]
)
async def test_help_exits_0_and_documents_the_flags(args: tuple[str, ...]) -> None:
    result = await run_cli(*args)

    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout
    assert "--upstream" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(("command", "status"), [(("check",), 1), (("run",), 2), ((), 2)])
async def test_an_unknown_flag_is_one_line_and_check_still_exits_1(
    command: tuple[str, ...], status: int
) -> None:
    result = await run_cli(*command, "--bogus")
    assert_one_line_error(result, status, "--bogus")


async def test_from_url_never_echoes_an_address_that_may_carry_the_code() -> None:
    result = await run_cli(
        "authorize",
        "--from-url",
        "callback?code=SECRETCODE123&state=x",
        env=clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=DEMO_CLIENT_SECRET),
    )
    assert_one_line_error(result, 2, "--from-url")
    assert "SECRETCODE123" not in result.stderr + result.stdout
