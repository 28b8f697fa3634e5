"""The proxy's own errors: one exception type, its codes, one envelope (Criteo's).

Tools that already parse Criteo's ``{"errors": [...]}`` parse ours too; the
``X-Criteo-Proxy-Error`` header tells them that the proxy, not Criteo, spoke.
Pure: the one function that makes the HTTP answer lives with the server side
(``app.error_response``), so that ``tokens`` and ``config`` never import it.
"""

from __future__ import annotations

import json
from typing import Final, Literal

import aiohttp
from yarl import URL

ErrorCode = Literal[
    "token_request_failed",
    "token_endpoint_unavailable",
    "upstream_unavailable",
    "upstream_timeout",
    "host_not_allowed",
    "origin_not_allowed",
    "absolute_uri_not_allowed",
    "method_not_allowed",
    "path_not_allowed",
    "proxy_key_required",
    "body_too_large",
    "body_timeout",
    "rate_limited",
    "not_found",
    "bad_request",
]

ERROR_HEADER: Final = "X-Criteo-Proxy-Error"

TITLES: Final[dict[ErrorCode, str]] = {
    "token_request_failed": "Could not obtain an access token",
    "token_endpoint_unavailable": "The token endpoint is unavailable",
    "upstream_unavailable": "The Criteo API is unreachable",
    "upstream_timeout": "The Criteo API did not answer in time",
    "host_not_allowed": "Host header not allowed",
    "origin_not_allowed": "Cross-site request not allowed",
    "absolute_uri_not_allowed": "Absolute request target not allowed",
    "method_not_allowed": "Method not allowed",
    "path_not_allowed": "Path not allowed",
    "proxy_key_required": "A valid X-Proxy-Key is required",
    "body_too_large": "Request body too large",
    "body_timeout": "The request body stalled",
    "rate_limited": "Rate limit reached",
    "not_found": "No such proxy endpoint",
    "bad_request": "Bad request to a proxy endpoint",
}

# The status line's reason phrase of each code (DESIGN 1): many tools show only that
# line ("HTTP Error 502: ..."), so it names the cause. Fixed text, printable ASCII, at
# most 80 characters, never the standard phrase alone.
REASONS: Final[dict[ErrorCode, str]] = {
    "token_request_failed": "Criteo refused the app credentials",
    "token_endpoint_unavailable": "Criteo token endpoint unavailable, no access token",
    "upstream_unavailable": "Criteo API unreachable from criteo-proxy",
    "upstream_timeout": "Criteo API did not answer in time",
    "host_not_allowed": "Host not allowed by criteo-proxy",
    "origin_not_allowed": "Browser origin not allowed by criteo-proxy",
    "absolute_uri_not_allowed": "Absolute request target refused by criteo-proxy",
    "method_not_allowed": "Method refused by criteo-proxy read_only mode",
    "path_not_allowed": "Path refused by criteo-proxy path rules",
    "proxy_key_required": "criteo-proxy needs a valid X-Proxy-Key",
    "body_too_large": "Request body over criteo-proxy max_body_bytes",
    "body_timeout": "Request body stalled before criteo-proxy got it all",
    "rate_limited": "Criteo rate limit: the wait would pass criteo-proxy max_wait",
    "not_found": "No such criteo-proxy endpoint",
    "bad_request": "Bad parameter for a criteo-proxy endpoint",
}


# Whose side each error is on (DESIGN 1), for the console's "who": what the person
# who saw "error" can do about it. token_endpoint_unavailable is "network" here, and
# "criteo" when the endpoint answered (a 5xx, nonsense): the token error says which.
Who = Literal["request", "setup", "criteo", "network"]
WHO: Final[dict[ErrorCode, Who]] = {
    "token_request_failed": "setup",
    "token_endpoint_unavailable": "network",
    "upstream_unavailable": "network",
    "upstream_timeout": "network",
    "host_not_allowed": "setup",
    "origin_not_allowed": "setup",
    "absolute_uri_not_allowed": "request",
    "method_not_allowed": "setup",
    "path_not_allowed": "setup",
    "proxy_key_required": "setup",
    "body_too_large": "setup",
    "body_timeout": "request",
    "rate_limited": "criteo",
    "not_found": "request",
    "bad_request": "request",
}


class ProxyError(Exception):
    """An error the proxy answers itself. ``detail`` is shown to the client: no secrets."""

    def __init__(self, status: int, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    @property
    def title(self) -> str:
        return TITLES[self.code]

    @property
    def who(self) -> Who:
        return WHO[self.code]

    @property
    def reason(self) -> str:
        return REASONS[self.code]


def build_error_body(error: ProxyError, request_id: str) -> bytes:
    envelope = {
        "errors": [
            {
                "type": "proxy",
                "code": error.code,
                "title": error.title,
                "detail": error.detail,
                "traceId": request_id,
            }
        ]
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a client-side I/O failure."""
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS error with {exc.host}:{exc.port}: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc.os_error})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class UpstreamFailure(ProxyError):
    """The upstream leg failed before any byte went to the client; KIND says how.

    ``connect``: no connection was made (refused, DNS, TLS handshake, connect
    timeout): nothing was sent. ``reset``: the connection was lost after the
    request went out, before the answer. ``timeout``: no answer within the
    limit. ``other``: anything else aiohttp's client reports.
    """

    def __init__(self, status: int, code: ErrorCode, detail: str, *, kind: str) -> None:
        super().__init__(status, code, detail)
        self.kind = kind


def classify(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return "connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return "reset"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "other"


class upstream_errors:  # lower case: used as a context manager, named as one
    """Turn the upstream leg's failures into the proxy's 502 / 504 (before any byte is sent).

    TIMEOUT names the limit that applies, e.g. ``upstream.response_timeout (120 s)``.
    A class rather than @contextmanager: it is entered on every request, and a
    generator-based one costs a generator and its frames each time.
    """

    __slots__ = ("_timeout", "_url")

    def __init__(self, url: URL, timeout: str) -> None:
        self._url = url
        self._timeout = timeout

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        if exc is None:
            return
        url = self._url
        if isinstance(exc, aiohttp.ConnectionTimeoutError):  # a TimeoutError, but to connect
            raise UpstreamFailure(
                502, "upstream_unavailable", f"{url.host}: {describe(exc)}", kind="connect"
            ) from exc
        if isinstance(exc, TimeoutError):
            raise UpstreamFailure(
                504,
                "upstream_timeout",
                f"{url.host} did not answer within {self._timeout}",
                kind="timeout",
            ) from exc
        if isinstance(exc, aiohttp.ClientError):
            raise UpstreamFailure(
                502, "upstream_unavailable", f"{url.host}: {describe(exc)}", kind=classify(exc)
            ) from exc
