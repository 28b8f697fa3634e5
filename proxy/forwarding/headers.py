"""The header policy: which headers cross the proxy, in which direction.

Pure functions over multidicts, tested with tables (werkzeug's ``http_proxy``
shape): hop-by-hop headers are dropped both ways, ``Host`` and
``Authorization`` are ours to set, the inbound key never leaves the machine, and an
upstream header the proxy could not write to its client is left out.
"""

from __future__ import annotations

import re
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.errors import ERROR_HEADER

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
# What aiohttp's writer refuses in a header or status line (RFC 9110 5.5: a control
# character other than HTAB), and what it cannot encode: bytes that were not UTF-8,
# which its client hands over as lone surrogates. Writing either drops the connection.
_UNWRITABLE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
_EXPOSED_HEADERS: Final = f"{REQUEST_ID_HEADER}, {ERROR_HEADER}"


def _dropped_by(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], base: frozenset[str], *, spare: str = ""
) -> frozenset[str]:
    """BASE, and the names a ``Connection`` header declares hop-by-hop (but SPARE).

    Most messages carry no Connection header, or one naming only what BASE has
    already (``keep-alive``): they get BASE itself, with no new set.
    """
    values = headers.getall("Connection", ())
    if not values:
        return base
    listed = {name.strip().lower() for value in values for name in value.split(",")}
    listed -= base
    listed.discard("")
    listed.discard(spare)
    return base | listed if listed else base


def build_upstream_headers(
    incoming: CIMultiDictProxy[str] | CIMultiDict[str], *, token: str | None, request_id: str
) -> CIMultiDict[str]:
    """The client's headers as Criteo should see them, in one pass over them.

    With a token, the client's own Authorization is replaced by it; without
    (``/oauth2/...``), the client's Authorization passes untouched.
    """
    base = _DROPPED_UPSTREAM if token is not None else _DROPPED_UPSTREAM_OAUTH
    # Authorization is ours to set, or the client's own for /oauth2/: never dropped here.
    dropped = _dropped_by(incoming, base, spare="authorization")
    headers = CIMultiDict([(k, v) for k, v in incoming.items() if k.lower() not in dropped])
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers[REQUEST_ID_HEADER] = request_id
    return headers


def is_writable(text: str) -> bool:
    """Whether TEXT can stand in a header or a status line the proxy writes."""
    return _UNWRITABLE.search(text) is None


def build_downstream_headers(
    upstream: CIMultiDictProxy[str], *, request_id: str
) -> tuple[CIMultiDict[str], list[str]]:
    """Criteo's response headers as the client should see them, in one pass over them,
    and the names of those left out because the proxy could not write them."""
    dropped = _dropped_by(upstream, HOP_BY_HOP)
    kept = [(k, v) for k, v in upstream.items() if k.lower() not in dropped]
    unwritable: list[str] = []
    # Most answers: one scan of all names and values together, and they all pass.
    if not is_writable("".join([k + v for k, v in kept])):
        unwritable = [k for k, v in kept if not (is_writable(k) and is_writable(v))]
        kept = [(k, v) for k, v in kept if is_writable(k) and is_writable(v)]
    headers = CIMultiDict(kept)
    headers[REQUEST_ID_HEADER] = request_id
    return headers, unwritable


def add_cors_headers(origin: str, headers: CIMultiDict[str]) -> None:
    """An allowed browser origin's CORS headers, on every answer (errors included)."""
    headers["Access-Control-Allow-Origin"] = origin
    headers["Access-Control-Expose-Headers"] = _EXPOSED_HEADERS
    headers.add("Vary", "Origin")
