"""``criteo-proxy authorize``: the consent URL, the code in the landing address, its exchange.

DESIGN.md §1 (``authorize``) and §3.4. The command runs as a subprocess against the
fake Criteo, which serves in the test's event loop (async helpers only). Only
127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import json
import shlex
import stat
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from yarl import URL

from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from tests.conftest import (
    ManualClock,
    assert_absent,
    assert_one_line_error,
    clean_env,
    demo_env,
    run_cli,
)
from tests.tokens.conftest import AUTHORIZE_AGAIN, REDIRECT_URI, run_to_exit, stored_token

CONSENT_URL = "https://consent.criteo.com/request"


# --- helpers ------------------------------------------------------------------------------


async def landing_url(http: aiohttp.ClientSession, criteo_url: str, consent_url: str) -> str:
    """Follow the consent URL at the fake's consent page; the address the browser lands on."""
    page = URL(criteo_url + "/_fake/consent").with_query(URL(consent_url).query)
    async with http.get(page, allow_redirects=False) as resp:
        assert resp.status == 302
        return resp.headers["Location"]


# --- 1. authorize --print-url -------------------------------------------------------------


async def test_print_url_prints_one_line_the_consent_url_with_every_parameter_url_encoded(
    tmp_path: Path,
) -> None:
    client_id = "démo client&x=1/?+"
    redirect_uri = "https://app.example/cb?next=/a b&x=é"
    state = "s t&a=t/e?ü+%20;"

    result = await run_cli(
        "authorize",
        "--print-url",
        "--state",
        state,
        "--redirect-uri",
        redirect_uri,
        env=clean_env(CRITEO_CLIENT_ID=client_id, CRITEO_CLIENT_SECRET="unused-secret"),
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    url = lines[0]
    assert url.isascii()
    assert " " not in url
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CONSENT_URL
    assert parts.fragment == ""
    assert parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True) == [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("state", state),
    ]
    assert "unused-secret" not in result.stdout + result.stderr


# --- 2. authorize --code / --from-url: the exchange and the store ------------------------

EXCHANGES = ["code", "from-url-with-state", "from-url-without-state"]


@pytest.mark.parametrize("how", EXCHANGES)
async def test_authorize_exchanges_the_code_and_stores_the_refresh_token_0600_in_a_0700_dir(
    how: str,
    criteo: FakeCriteo,
    criteo_url: str,
    config_file: Path,
    store_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    config = ("--config", str(config_file))
    if how == "code":
        code = criteo.consent(DEMO_CLIENT_ID, REDIRECT_URI)
        args: tuple[str, ...] = (f"--code={code}", "--redirect-uri", REDIRECT_URI)
    else:
        state = "st-42" if how == "from-url-with-state" else None
        state_args = ("--state", state) if state else ()
        printed = await run_cli("authorize", "--print-url", *state_args, *config, env=demo_env())
        assert printed.returncode == 0, printed.stderr
        landed = await landing_url(http, criteo_url, printed.stdout.strip())
        code = URL(landed).query["code"]
        args = ("--from-url", landed, *state_args)
    assert not store_path.parent.exists()

    result = await run_cli("authorize", *args, *config, env=demo_env())

    assert result.returncode == 0, result.stderr
    exchanges = [r for r in criteo.token_requests if r.form.get("grant_type") != "refresh_token"]
    assert len(exchanges) == 1
    assert exchanges[0].content_type.startswith("application/x-www-form-urlencoded")
    assert exchanges[0].form == {
        "grant_type": "authorization_code",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "code": code,
        "redirect_uri": REDIRECT_URI,
    }
    assert stat.S_IMODE(store_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    refresh_token = stored_token(store_path)
    assert criteo.refresh_tokens == {refresh_token: DEMO_CLIENT_ID}  # the one the fake issued
    assert str(store_path) in result.stdout
    assert "Traceback" not in result.stderr
    assert_absent({refresh_token, DEMO_CLIENT_SECRET, code}, result.stdout, result.stderr)
    # No temp file; the store's lock file (the rotations' flock) is its one companion.
    assert sorted(p.name for p in store_path.parent.iterdir()) == [
        store_path.name,
        store_path.name + ".lock",
    ]


QUERY_REDIRECT_URI = "https://app.example/cb?tenant=acme%20corp&lang=fr&empty="


@pytest.mark.parametrize("where", ["config", "flag", "landing"])
async def test_a_redirect_uri_with_a_query_is_kept_byte_for_byte_through_consent_and_exchange(
    where: str, criteo: FakeCriteo, criteo_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """RFC 6749 3.1.2: a redirect URI may carry a query; it is one parameter of the consent
    URL, and the exchange sends it exactly as the consent had it (DESIGN 3.4)."""
    store_path = tmp_path / "tokens.json"
    credentials: dict[str, str] = {
        "grant_type": "authorization_code",
        "token_store": str(store_path),
    }
    if where == "config":
        credentials["redirect_uri"] = QUERY_REDIRECT_URI
    config_file = tmp_path / "criteo-proxy.yaml"
    config_file.write_text(
        json.dumps({"upstream": {"url": criteo_url}, "credentials": credentials}),
        encoding="utf-8",
    )
    config = ("--config", str(config_file))
    flag = () if where == "config" else ("--redirect-uri", QUERY_REDIRECT_URI)
    printed = await run_cli(
        "authorize", "--print-url", "--state", "s1", *flag, *config, env=demo_env()
    )
    assert printed.returncode == 0, printed.stderr
    consent_query = parse_qsl(urlsplit(printed.stdout.strip()).query, strict_parsing=True)
    assert ("redirect_uri", QUERY_REDIRECT_URI) in consent_query
    landed = await landing_url(http, criteo_url, printed.stdout.strip())
    assert landed.startswith(QUERY_REDIRECT_URI + "&code=")

    exchange = ("--from-url", landed, "--state", "s1")
    if where == "flag":
        exchange = (f"--code={URL(landed).query['code']}", *flag)
    result = await run_cli("authorize", *exchange, *config, env=demo_env())

    assert result.returncode == 0, result.stderr
    assert criteo.token_requests[-1].form["redirect_uri"] == QUERY_REDIRECT_URI
    assert store_path.exists()


@pytest.mark.parametrize(
    "step", [("--print-url",), ("--code=c",), ("--from-url", REDIRECT_URI + "?code=c")]
)
async def test_a_redirect_uri_flag_with_a_fragment_is_a_one_line_error(
    step: tuple[str, ...], config_file: Path, criteo: FakeCriteo
) -> None:
    result = await run_to_exit(
        "authorize",
        *step,
        "--redirect-uri",
        REDIRECT_URI + "#top",
        "--config",
        str(config_file),
        env=demo_env(),
    )
    assert_one_line_error(result, 2, "--redirect-uri", "fragment")
    assert criteo.token_requests == []


# --- 4. --from-url refusals ---------------------------------------------------------------


async def test_from_url_with_a_wrong_state_fails_with_one_line_and_stores_nothing(
    criteo: FakeCriteo,
    criteo_url: str,
    config_file: Path,
    store_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    printed = await run_cli(
        "authorize",
        "--print-url",
        "--state",
        "right",
        "--config",
        str(config_file),
        env=demo_env(),
    )
    landed = await landing_url(http, criteo_url, printed.stdout.strip())

    result = await run_cli(
        "authorize",
        "--from-url",
        landed,
        "--state",
        "wrong",
        "--config",
        str(config_file),
        env=demo_env(),
    )

    assert result.returncode != 0
    assert_one_line_error(result, result.returncode, "state")
    assert not store_path.exists()
    assert criteo.token_requests == []  # the code was not even sent
    assert_absent({URL(landed).query["code"]}, result.stdout, result.stderr)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("error=access_denied&error_description=The+user+refused&state=s", "consent was not given"),
        ("state=s", "no code"),
        ("code=&state=s", "no code"),
        ("https://xn--a.example/cb?code=c&state=s", "full address"),
    ],
    ids=["access-denied", "no-code", "empty-code", "bad-punycode"],
)
async def test_from_url_without_a_usable_code_fails_with_one_line_saying_why(
    query: str, fragment: str, criteo: FakeCriteo, config_file: Path, store_path: Path
) -> None:
    result = await run_cli(
        "authorize",
        "--from-url",
        query if query.startswith("https://") else f"{REDIRECT_URI}?{query}",
        "--state",
        "s",
        "--config",
        str(config_file),
        env=demo_env(),
    )

    assert result.returncode != 0
    line = assert_one_line_error(result, result.returncode, fragment)
    if "access_denied" in query:
        assert "access_denied" in line
    assert not store_path.exists()
    assert criteo.token_requests == []


# --- 5. codes are single use, short-lived and bound to their redirect URI -----------------


async def test_a_code_is_single_use_the_second_exchange_fails_and_keeps_the_first_store(
    criteo: FakeCriteo, config_file: Path, store_path: Path
) -> None:
    code = criteo.consent(DEMO_CLIENT_ID, REDIRECT_URI)
    args = (
        "authorize",
        f"--code={code}",
        "--redirect-uri",
        REDIRECT_URI,
        "--config",
        str(config_file),
    )
    first = await run_cli(*args, env=demo_env())
    assert first.returncode == 0, first.stderr
    before = store_path.read_bytes()

    second = await run_cli(*args, env=demo_env())

    assert_one_line_error(second, 1, "invalid_grant", AUTHORIZE_AGAIN)
    assert store_path.read_bytes() == before
    assert_absent({code, DEMO_CLIENT_SECRET, stored_token(store_path)}, second.stderr)


async def test_an_expired_code_fails_with_invalid_grant_and_stores_nothing(
    criteo: FakeCriteo, clock: ManualClock, config_file: Path, store_path: Path
) -> None:
    code = criteo.consent(DEMO_CLIENT_ID, REDIRECT_URI)
    clock.advance(criteo.code_lifetime + 1)

    result = await run_cli(
        "authorize",
        f"--code={code}",
        "--redirect-uri",
        REDIRECT_URI,
        "--config",
        str(config_file),
        env=demo_env(),
    )

    assert_one_line_error(result, 1, "invalid_grant", AUTHORIZE_AGAIN)
    assert not store_path.exists()


async def test_a_code_bound_to_another_redirect_uri_fails_with_invalid_grant(
    criteo: FakeCriteo, config_file: Path, store_path: Path
) -> None:
    code = criteo.consent(DEMO_CLIENT_ID, "https://other.example/cb")

    result = await run_cli(
        "authorize",
        f"--code={code}",
        "--redirect-uri",
        REDIRECT_URI,
        "--config",
        str(config_file),
        env=demo_env(),
    )

    assert_one_line_error(result, 1, "invalid_grant", AUTHORIZE_AGAIN)
    assert criteo.token_requests[-1].form["redirect_uri"] == REDIRECT_URI
    assert not store_path.exists()


# --- 12. config errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [("--print-url",), ("--code=some-code",)],
    ids=["print-url", "code"],
)
async def test_authorize_without_any_redirect_uri_is_a_one_line_error_naming_the_flag(
    step: tuple[str, ...], tmp_path: Path, criteo_url: str, criteo: FakeCriteo
) -> None:
    """The config may omit credentials.redirect_uri (the server never sends it); authorize
    then needs --redirect-uri, and says so in one line."""
    config_file = tmp_path / "criteo-proxy.yaml"
    config_file.write_text(
        json.dumps(
            {
                "upstream": {"url": criteo_url},
                "credentials": {
                    "grant_type": "authorization_code",
                    "token_store": str(tmp_path / "tokens.json"),
                },
            }
        ),
        encoding="utf-8",
    )

    result = await run_to_exit("authorize", *step, "--config", str(config_file), env=demo_env())

    assert_one_line_error(result, 2, "--redirect-uri")
    assert criteo.token_requests == []


async def test_the_follow_up_command_of_print_url_carries_its_config_and_profile(
    criteo: FakeCriteo, criteo_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The hint printed after the consent URL, run as printed (with the landing address
    filled in), exchanges the code for the same profile of the same config file."""
    directory = tmp_path / "my configs"  # a space: the hint must quote it
    directory.mkdir()
    store_path = directory / "tokens-adv.json"
    config_file = directory / "criteo proxy.yaml"
    adv = {
        "listen": {"port": 0},
        "credentials": {
            "grant_type": "authorization_code",
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
            "redirect_uri": REDIRECT_URI,
            "token_store": str(store_path),
        },
    }
    config_file.write_text(
        json.dumps(
            {"upstream": {"url": criteo_url}, "listen": {"port": 0}, "profiles": {"adv": adv}}
        )
    )
    printed = await run_cli(
        "authorize", "--config", str(config_file), "--profile", "adv", "--print-url",
        "--state", "s1", env=demo_env(),
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    hint = printed.stderr.strip()
    assert "then run: " in hint, hint
    words = shlex.split(hint.split("then run: ", 1)[1])
    assert words[:2] == ["criteo-proxy", "authorize"]
    assert words[words.index("--config") + 1] == str(config_file)
    assert words[words.index("--profile") + 1] == "adv"

    landed = await landing_url(http, criteo_url, printed.stdout.strip())
    filled = [landed if word == "<the address you land on>" else word for word in words]
    assert filled != words
    result = await run_cli(*filled[1:], env=demo_env())
    assert result.returncode == 0, result.stderr
    assert stored_token(store_path)
