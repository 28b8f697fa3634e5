"""The header policy: which headers cross the proxy, in which direction.

Pure functions over multidicts, tested with tables (werkzeug's ``http_proxy``
shape): hop-by-hop headers are dropped both ways, ``Host`` and
``Authorization`` are ours to set, the inbound key never leaves the machine.
"""

from __future__ import annotations

from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never forwarded upstream: ours to answer (Expect), ours to set (Host,
# Authorization), or the inbound key that must not leave the machine.
_REQUEST_ONLY: Final = frozenset(
    {"host", "authorization", "expect", "x-proxy-key", "http2-settings"}
)
# The sets a request's headers are filtered with, made once rather than per request.
_DROPPED_UPSTREAM: Final = HOP_BY_HOP | _REQUEST_ONLY
_DROPPED_UPSTREAM_OAUTH: Final = _DROPPED_UPSTREAM - {"authorization"}
REQUEST_ID_HEADER: Final = "X-Request-Id"


def connection_listed(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    """Header names that a ``Connection`` header declares hop-by-hop."""
    return {
        name.strip().lower()
        for value in headers.getall("Connection", ())
        for name in value.split(",")
        if name.strip()
    }


def build_upstream_headers(
    incoming: CIMultiDictProxy[str] | CIMultiDict[str], *, token: str | None, request_id: str
) -> CIMultiDict[str]:
    """The client's headers as Criteo should see them.

    With a token, the client's own Authorization is replaced by it; without
    (``/oauth2/...``), the client's Authorization passes untouched.
    """
    dropped = _DROPPED_UPSTREAM if token is not None else _DROPPED_UPSTREAM_OAUTH
    listed = connection_listed(incoming)
    if listed:
        dropped = dropped | (listed - {"authorization"})
    headers = CIMultiDict((k, v) for k, v in incoming.items() if k.lower() not in dropped)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers[REQUEST_ID_HEADER] = request_id
    return headers


def build_downstream_headers(
    upstream: CIMultiDictProxy[str], *, request_id: str
) -> CIMultiDict[str]:
    """Criteo's response headers as the client should see them."""
    listed = connection_listed(upstream)
    dropped = HOP_BY_HOP | listed if listed else HOP_BY_HOP
    headers = CIMultiDict((k, v) for k, v in upstream.items() if k.lower() not in dropped)
    headers[REQUEST_ID_HEADER] = request_id
    return headers
