"""``criteo-proxy token``'s quick answer: the cached token, found from the environment
and the flags alone, before the config is loaded.

A shell loop of ``$(criteo-proxy token)`` starts Python once per call; loading the
config (its dataclasses, its checks) would more than double that. Taken only when
nothing but the environment and the URL flags can say which app it is: no config
file, the default profile, both credentials in the environment, plain URLs. The
cache key is then the one the full path computes (tests/cli/test_token_cache.py),
so a hit here is a hit there; anything else, or a miss, takes the full path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from proxy.config.addresses import parse_plain_url
from proxy.config.defaults import (
    CLIENT_ID_ENV_VAR,
    CLIENT_SECRET_ENV_VAR,
    CONFIG_ENV_VAR,
    DEFAULT_PROFILE,
    DEFAULT_REFRESH_MARGIN_SECONDS,
    DEFAULT_UPSTREAM_URL,
)
from proxy.tokens.command_cache import TokenCache, default_cache_path

TYPE_CHECKING = False  # not typing's: importing typing costs a cached token's start
if TYPE_CHECKING:
    import argparse

# Flags the full path would check; with any of them it decides.
_CHECKED_FLAGS = ("config", "host", "port")
# The only flags of a plain ``token`` read before the grammar is loaded (their dests).
_URL_FLAGS = {"--upstream": "upstream", "--token-url": "token_url"}


def quick_cached_token(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The cached token of ``token [--upstream URL] [--token-url URL]``, read before
    argparse is even imported (it is a quarter of the start-up). Any other word (a
    flag, an abbreviation, a second subcommand) leaves the answer to the full grammar."""
    if not argv or argv[0] != "token":
        return None
    urls: dict[str, str] = {}
    words = iter(argv[1:])
    for word in words:
        flag, equals, value = word.partition("=")
        if flag not in _URL_FLAGS or _URL_FLAGS[flag] in urls:
            return None
        if not equals:
            value = next(words, "")
        urls[_URL_FLAGS[flag]] = value
    return _cached_token(urls.get("upstream"), urls.get("token_url"), environ)


def find_cached_token(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    if any(flag in args for flag in _CHECKED_FLAGS) or args.profile not in (None, DEFAULT_PROFILE):
        return None
    return _cached_token(getattr(args, "upstream", None), getattr(args, "token_url", None), environ)


def _cached_token(
    upstream: str | None, token_url: str | None, environ: Mapping[str, str]
) -> str | None:
    if environ.get(CONFIG_ENV_VAR):
        return None
    client_id = environ.get(CLIENT_ID_ENV_VAR)
    client_secret = environ.get(CLIENT_SECRET_ENV_VAR)
    if not client_id or not client_secret:
        return None
    for url in (upstream, token_url):
        plain = None if url is None else parse_plain_url(url)
        if url is not None and (plain is None or plain.query):
            return None  # the full path says what is wrong with it
    upstream = upstream or DEFAULT_UPSTREAM_URL
    try:
        cache = TokenCache(
            default_cache_path(DEFAULT_PROFILE, environ),
            client_id=client_id,
            token_url=token_url or f"{upstream.rstrip('/')}/oauth2/token",
            client_secret=client_secret,
        )
    except UnicodeError:  # a secret that is not text: the full path says so, in one line
        return None
    return cache.load(margin_seconds=DEFAULT_REFRESH_MARGIN_SECONDS)
