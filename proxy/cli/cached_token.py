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

import argparse
from collections.abc import Mapping

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

# Flags the full path would check; with any of them it decides.
_CHECKED_FLAGS = ("config", "host", "port")


def find_cached_token(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    if any(flag in args for flag in _CHECKED_FLAGS) or environ.get(CONFIG_ENV_VAR):
        return None
    if args.profile not in (None, DEFAULT_PROFILE):
        return None
    client_id = environ.get(CLIENT_ID_ENV_VAR)
    client_secret = environ.get(CLIENT_SECRET_ENV_VAR)
    if not client_id or not client_secret:
        return None
    upstream: str = getattr(args, "upstream", DEFAULT_UPSTREAM_URL)
    token_url: str | None = getattr(args, "token_url", None)
    for url in (upstream, token_url):
        plain = None if url is None else parse_plain_url(url)
        if url is not None and (plain is None or plain.query):
            return None  # the full path says what is wrong with it
    cache = TokenCache(
        default_cache_path(DEFAULT_PROFILE, environ),
        client_id=client_id,
        token_url=token_url or f"{upstream.rstrip('/')}/oauth2/token",
        client_secret=client_secret,
    )
    return cache.load(margin_seconds=DEFAULT_REFRESH_MARGIN_SECONDS)
