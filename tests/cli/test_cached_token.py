"""``criteo-proxy token``'s quick answer, before the config is loaded: it finds exactly
the entry the full path keeps, and steps aside whenever the config could say more."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli.arguments import FLAG_KEYS, build_parser
from proxy.cli.cached_token import find_cached_token, quick_cached_token
from proxy.config.loader import load_config
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from proxy.tokens.command_cache import TokenCache, default_cache_path

UPSTREAM = "http://127.0.0.1:9"


def environment(cache: Path, **extra: str) -> dict[str, str]:
    return {
        "XDG_CACHE_HOME": str(cache),
        "CRITEO_CLIENT_ID": DEMO_CLIENT_ID,
        "CRITEO_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        **extra,
    }


def keep_as_the_full_path_does(argv: list[str], environ: dict[str, str], token: str) -> None:
    """What `criteo-proxy token ARGV` stores after a fetch: the config's own key."""
    args, _ = build_parser().parse_known_args(["token", *argv])
    overrides = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if flag in args}
    config = load_config(getattr(args, "config", None), environ=environ, overrides=overrides)
    profile = config.profile(args.profile or "default")
    TokenCache(
        default_cache_path(profile.name, environ),
        client_id=profile.credentials.client_id,
        token_url=profile.upstream.effective_token_url,
        client_secret=profile.credentials.client_secret.reveal(),
    ).save(token, expires_in=900)


def quick(argv: list[str], environ: dict[str, str]) -> str | None:
    args, _ = build_parser().parse_known_args(["token", *argv])
    return find_cached_token(args, environ)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--upstream", UPSTREAM],
        ["--upstream", UPSTREAM + "/"],
        ["--upstream", UPSTREAM + "/prefix/"],
        ["--token-url", UPSTREAM + "/oauth2/token"],
        ["--upstream", UPSTREAM, "--token-url", "https://auth.example/token"],
        ["--upstream", UPSTREAM, "--log-level", "debug", "--log-format", "json"],
        ["--profile", "default", "--upstream", UPSTREAM],
    ],
)
def test_it_finds_the_entry_the_full_path_keeps(tmp_path: Path, argv: list[str]) -> None:
    environ = environment(tmp_path)
    keep_as_the_full_path_does(argv, environ, "the-cached-token")
    assert quick(argv, environ) == "the-cached-token"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--upstream", UPSTREAM],
        ["--upstream=" + UPSTREAM + "/"],
        ["--token-url", UPSTREAM + "/oauth2/token"],
        ["--token-url=https://auth.example/token", "--upstream", UPSTREAM],
    ],
)
def test_before_the_grammar_a_plain_token_finds_the_same_entry(
    tmp_path: Path, argv: list[str]
) -> None:
    environ = environment(tmp_path)
    keep_as_the_full_path_does(argv, environ, "the-cached-token")
    assert quick_cached_token(["token", *argv], environ) == "the-cached-token"


@pytest.mark.parametrize(
    "argv",
    [
        ["token", "--fresh"],
        ["token", "--log-level", "debug"],
        ["token", "--profile", "default"],
        ["token", "--up", UPSTREAM],  # an abbreviation: argparse reads it
        ["token", "--upstream"],  # argparse refuses it
        ["token", "--upstream", UPSTREAM, "--upstream", UPSTREAM],
        ["token", "-h"],
        ["token", "extra"],
        ["check"],
        ["--upstream", UPSTREAM, "token"],
        [],
    ],
)
def test_before_the_grammar_any_other_word_is_left_to_the_grammar(
    tmp_path: Path, argv: list[str]
) -> None:
    environ = environment(tmp_path)
    keep_as_the_full_path_does([], environ, "the-cached-token")
    keep_as_the_full_path_does(["--upstream", UPSTREAM], environ, "the-cached-token")
    assert quick_cached_token(argv, environ) is None


def test_another_secret_or_client_is_another_app(tmp_path: Path) -> None:
    keep_as_the_full_path_does([], environment(tmp_path), "the-cached-token")
    other_secret = environment(tmp_path, CRITEO_CLIENT_SECRET="another-secret")
    assert quick([], other_secret) is None
    assert quick_cached_token(["token"], other_secret) is None
    other_client = environment(tmp_path, CRITEO_CLIENT_ID="another-client")
    assert quick([], other_client) is None
    assert quick_cached_token(["token"], other_client) is None


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["--config", "FILE"], {}),  # the file may name another app, or another margin
        ([], {"CRITEO_PROXY_CONFIG": "FILE"}),
        (["--profile", "retail"], {}),
        (["--host", "127.0.0.1"], {}),  # checked by the full path
        (["--port", "8081"], {}),
        (["--upstream", "https://api.criteo.com?x=1"], {}),  # an error there
        (["--upstream", "https://api.criteo.com#f"], {}),
        (["--upstream", "not a url"], {}),
    ],
)
def test_it_steps_aside_when_the_config_could_say_more(
    tmp_path: Path, argv: list[str], extra: dict[str, str]
) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text("{}\n")
    argv = [str(config) if word == "FILE" else word for word in argv]
    extra = {name: str(config) if value == "FILE" else value for name, value in extra.items()}
    environ = environment(tmp_path, **extra)
    for profile in ("default", "retail"):  # an entry wherever the full path could look
        TokenCache(
            default_cache_path(profile, environ),
            client_id=DEMO_CLIENT_ID,
            token_url="https://api.criteo.com/oauth2/token",
            client_secret=DEMO_CLIENT_SECRET,
        ).save("the-cached-token", expires_in=900)
    assert quick(argv, environ) is None
    assert quick_cached_token(["token", *argv], environ) is None


def test_it_needs_both_credentials_in_the_environment(tmp_path: Path) -> None:
    keep_as_the_full_path_does([], environment(tmp_path), "the-cached-token")
    environ = environment(tmp_path)
    del environ["CRITEO_CLIENT_SECRET"]
    assert quick([], environ) is None
    assert quick_cached_token(["token"], environ) is None


def test_a_secret_that_is_not_text_is_left_to_the_full_path(tmp_path: Path) -> None:
    environ = environment(tmp_path, CRITEO_CLIENT_SECRET="ab\udcff")  # bytes ab\xff
    assert quick_cached_token(["token"], environ) is None
