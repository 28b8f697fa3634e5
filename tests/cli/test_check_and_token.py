"""``criteo-proxy check`` and ``criteo-proxy token``: what they print, and a wrong secret."""

from __future__ import annotations

from proxy.fakes.criteo import DEMO_CLIENT_ID, FakeCriteo
from tests.cli.conftest import make_secret
from tests.conftest import assert_absent, assert_one_line_error, clean_env, demo_env, run_cli

# --- check ------------------------------------------------------------------------------


async def test_check_prints_what_it_found_but_never_the_secret_or_the_token(
    criteo: FakeCriteo, criteo_url: str
) -> None:
    secret = make_secret()
    criteo.clients = {"e2e-client": secret}
    env = clean_env(CRITEO_CLIENT_ID="e2e-client", CRITEO_CLIENT_SECRET=secret)

    result = await run_cli("check", "--upstream", criteo_url, env=env)

    assert result.returncode == 0, result.stderr
    assert criteo_url in result.stdout
    assert "e2e-client" in result.stdout
    assert len(criteo.issued) == 1  # it really fetched a token
    assert "Traceback" not in result.stderr
    assert_absent({secret, *criteo.issued}, result.stdout, result.stderr)


async def test_check_with_a_wrong_secret_fails_with_one_line_and_no_traceback(
    criteo: FakeCriteo, criteo_url: str
) -> None:
    wrong = make_secret()
    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=wrong)

    result = await run_cli("check", "--upstream", criteo_url, env=env)

    assert_one_line_error(result, 1, "token_request_failed", "invalid_client")
    assert criteo.issued == {}
    assert_absent({wrong}, result.stdout, result.stderr)


# --- token ------------------------------------------------------------------------------


async def test_token_prints_the_access_token_and_nothing_else_on_stdout(
    criteo: FakeCriteo, criteo_url: str
) -> None:
    result = await run_cli("token", "--upstream", criteo_url, env=demo_env())

    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0] in criteo.issued
    assert list(criteo.issued) == [lines[0]]
    assert "Traceback" not in result.stderr
    assert lines[0] not in result.stderr  # logs go to stderr, the token never does


async def test_token_with_a_wrong_secret_fails_with_one_line_and_no_traceback(
    criteo: FakeCriteo, criteo_url: str
) -> None:
    wrong = make_secret()
    env = clean_env(CRITEO_CLIENT_ID=DEMO_CLIENT_ID, CRITEO_CLIENT_SECRET=wrong)

    result = await run_cli("token", "--upstream", criteo_url, env=env)

    assert_one_line_error(result, 1, "token_request_failed", "invalid_client")
    assert result.stdout == ""
    assert_absent({wrong}, result.stdout, result.stderr)
