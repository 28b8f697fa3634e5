"""The upstream leg: the one pooled session every profile shares, and the client
request class that sends a client's headers as they are."""

from __future__ import annotations

import ssl
from typing import Final

import aiohttp
from multidict import CIMultiDict

from proxy.config.schema import UpstreamConfig

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
    # switch; tests/forwarding/test_retries.py counts the sends, so a change in aiohttp shows there.
    session._retry_connection = False
    return session
