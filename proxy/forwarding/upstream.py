"""The upstream leg, built from the config: the one pooled session, the corporate
proxy from the environment, and the token provider with its grant."""

from __future__ import annotations

import ssl
import time
import urllib.request
from collections.abc import Callable
from typing import Final

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from proxy.config.schema import Config, CredentialsConfig, UpstreamConfig
from proxy.tokens.grants import ClientCredentialsGrant, RefreshTokenGrant
from proxy.tokens.provider import Grant, TokenProvider
from proxy.tokens.store import TokenStore

Clock = Callable[[], float]

# aiohttp's client adds these when absent; a proxy must pass the client's as they are.
_AUTO_HEADERS_TO_SKIP: Final = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_SKIPPED: Final[CIMultiDict[None]] = CIMultiDict((name, None) for name in _AUTO_HEADERS_TO_SKIP)


class PassThroughRequest(aiohttp.ClientRequest):
    """aiohttp's client request without the headers it would add on its own.

    The session's skip_auto_headers would do the same, but aiohttp rebuilds that
    list for every request (sorted, into a new multidict, with a copy of all the
    request's headers): 9 µs of a request's ~250 in tests/bench/bench.py's
    profile. Here the list is made once, and the session has none of its own.
    """

    def update_auto_headers(self, skip_auto_headers: object) -> None:
        # aiohttp reads this list again for the body's own headers (Content-Type).
        self._skip_auto_headers = _SKIPPED


def build_grant(credentials: CredentialsConfig) -> Grant:
    """The grant the server runs with; an unusable token store is a TokenStoreError here."""
    if credentials.grant_type == "authorization_code":
        return RefreshTokenGrant(
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            store=TokenStore(credentials.token_store),
        )
    return ClientCredentialsGrant(
        client_id=credentials.client_id, client_secret=credentials.client_secret
    )


def build_session(upstream: UpstreamConfig) -> aiohttp.ClientSession:
    """One pooled, keep-alive session: the TLS handshake to Criteo is paid once."""
    ssl_context = ssl.create_default_context()
    if upstream.ca_file:
        ssl_context.load_verify_locations(cafile=upstream.ca_file)
    connector = aiohttp.TCPConnector(limit=upstream.max_connections, ssl=ssl_context)
    session = aiohttp.ClientSession(
        connector=connector,
        # connect bounds the TCP/TLS set-up; waiting for a pooled connection and
        # for the response headers is bounded by response_timeout in forward.
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=upstream.connect_timeout,
            sock_read=upstream.read_timeout,
        ),
        auto_decompress=False,  # compressed bodies pass through as bytes
        cookie_jar=aiohttp.DummyCookieJar(),  # never carry one client's cookies to another
        request_class=PassThroughRequest,  # no auto headers: the client's, as they are
        read_bufsize=256 * 1024,  # flow-control window per upstream connection
    )
    # aiohttp silently sends an idempotent request a second time when its connection
    # drops before the answer; the proxy's own transient rule (DESIGN 10) does that, and
    # counts it: never more than 1 + retry.transient.attempts sends. There is no public
    # switch; tests/test_retries.py counts the sends, so a change in aiohttp shows there.
    session._retry_connection = False
    return session


def env_proxy_for(url: str) -> str | None:
    """The HTTPS_PROXY / HTTP_PROXY for URL, unless NO_PROXY exempts its host.

    Resolved once, with the standard library's rules, instead of aiohttp's
    ``trust_env``, which would also read ~/.netrc and add its credentials.
    """
    parsed = URL(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parsed.scheme or "")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy or bypass(parsed.host or "", proxies):
        return None
    return proxy


def build_token_provider(
    config: Config,
    session: aiohttp.ClientSession,
    *,
    clock: Clock = time.monotonic,
    on_fetch: Callable[[bool], None] | None = None,
    grant: Grant | None = None,
) -> TokenProvider:
    """The provider for CONFIG; GRANT replaces the configured one (``authorize``)."""
    token_url = config.upstream.effective_token_url
    return TokenProvider(
        session,
        grant or build_grant(config.credentials),
        token_url=token_url,
        margin_seconds=config.tokens.refresh_margin,
        timeout_seconds=config.upstream.response_timeout,
        http_proxy=env_proxy_for(token_url),
        clock=clock,
        on_fetch=on_fetch,
    )
