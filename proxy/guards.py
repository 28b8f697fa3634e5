"""Inbound checks, made before anything is forwarded."""

from __future__ import annotations

from yarl import URL

from .errors import ProxyError


def parse_request_target(raw_target: str) -> str:
    """The path and query to forward, from the raw request target.

    Origin-form (``/2025-10/x?a=1``) is forwarded as is. An absolute-form
    target (``http://other.host/x``) is refused: the token only ever goes to
    the configured upstream, never to a host a client names.
    """
    if raw_target.startswith("/"):
        return raw_target
    try:
        host = URL(raw_target).host
    except ValueError:
        host = None
    raise ProxyError(
        400,
        "absolute_uri_not_allowed",
        f"absolute request target for {host or 'another host'!s} refused: "
        "send origin-form requests (GET /2025-10/... with a Host header)",
    )
