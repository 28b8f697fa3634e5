"""``who`` and ``advice`` of a failed request, for the person whose tool said "error".

Many tools show only the status line; the console says whose side the failure is
on (DESIGN 1: ``request``, ``setup``, ``criteo``, ``network``) and what to do
next, in one plain sentence of at most MAX_ADVICE_CHARS: it quotes Criteo's
``title`` (and ``detail`` when QUOTE_DETAIL, i.e. ``console.error_bodies``) and,
for ``criteo`` and ``network``, says whether the proxy retried. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Final, NamedTuple

from proxy.errors import Who
from proxy.exchange import Exchange
from proxy.forwarding.forwarder import is_oauth_path

MAX_ADVICE_CHARS: Final = 300
_MAX_QUOTE_CHARS: Final = 160
# Methods that change nothing twice (RFC 9110 9.2.2): the only ones retry.transient may
# retry after a 5xx; for any other, a 5xx may follow work already done.
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_OAUTH_ERROR: Final = re.compile(r"[a-z_]{1,40}")  # invalid_client; never free text
_FREES_AT: Final = re.compile(r"frees a slot at (\d\d:\d\d:\d\d UTC)")  # rate_limited's detail
_TOKEN_REQUEST: Final = re.compile(r"^POST \S+ ")  # how a token error's detail starts


class Advice(NamedTuple):
    who: Who
    advice: str


class _Said(NamedTuple):
    """What an error envelope says: Criteo's (or the proxy's own) first error."""

    title: str
    detail: str


def build_advice(
    status: int,
    method: str,
    exchange: Exchange,
    raw_path: str,
    *,
    quote_detail: bool,
    scrub: str | None,
) -> Advice | None:
    """Whose side a failed answer is on, and what to do; None below 400."""
    if status < 400:
        return None
    said = _read_envelope(exchange.error_body)
    if scrub:  # before any clipping, which could keep the start of a token
        said = _Said(said.title.replace(scrub, "***"), said.detail.replace(scrub, "***"))
    if exchange.proxy_error is not None:
        who: Who = exchange.who or "request"
        text = _proxy_advice(exchange.proxy_error, who, said.detail, exchange)
    elif exchange.aborted:
        who = "network"
        text = (
            "The connection to Criteo broke in the middle of the answer, so the client got a "
            "cut transfer: send the request again."
        )
    elif status == 499:
        who = "request"
        text = (
            "The client closed the connection before the answer was complete: check the "
            "client's own timeout, then send the request again."
        )
    elif is_oauth_path(exchange.target or raw_path):
        who = "request"
        text = _oauth_advice(status, exchange.error_body)
    else:
        who, text = _criteo_advice(status, method, said, exchange, quote_detail=quote_detail)
    if scrub:
        text = text.replace(scrub, "***")
    return Advice(who, _one_sentence(text))


def _criteo_advice(
    status: int, method: str, said: _Said, exchange: Exchange, *, quote_detail: bool
) -> tuple[Who, str]:
    quote = _quote(status, said, quote_detail=quote_detail)
    if status == 401:
        again = " even after the proxy fetched a new one" if exchange.retried == "401" else ""
        return "setup", (
            f"Criteo refused the proxy's access token{again} ({quote}): check that the app "
            "in the proxy's credentials may call this API."
        )
    if status == 403:
        return "setup", (
            f"Criteo says the app may not do this ({quote}): the advertiser must give the "
            "app consent for this account, or the app needs this API in Criteo's developer "
            "portal."
        )
    if status == 429:
        tried = (
            "the proxy waited for the reset and retried once"
            if exchange.retried == "429"
            else "it was not retried"
        )
        return "criteo", (
            f"Criteo's rate limit was reached ({quote}); {tried}: wait for the window to "
            "reset and send it again, or send fewer requests at a time."
        )
    if status >= 500:
        then = "try again later"
        if exchange.retried == "transient":
            tried = "the proxy retried it and Criteo failed again"
        elif method not in _IDEMPOTENT:
            tried = f"it was not retried, as a {_clip(method, 20)} may already have been done"
            then = "check whether it took effect before you send it again"
        else:
            tried = "it was not retried (retry.transient did not allow it)"
        trace = f", giving traceId {exchange.criteo_trace_id}" if exchange.criteo_trace_id else ""
        return "criteo", (
            f"Criteo failed on its side ({quote}); {tried}: {then}, and if it persists, tell "
            f"Criteo's support{trace}."
        )
    if status == 410:
        return "request", (
            f"Criteo no longer serves this ({quote}): if the path's API version is retired, "
            "move the request to a live one."
        )
    return "request", (
        f"Criteo rejected the request ({quote}): fix the request (path, parameters or body) "
        "and send it again."
    )


def _proxy_advice(code: str, who: Who, detail: str, exchange: Exchange) -> str:
    """The proxy's own error, by its code; its detail is the proxy's own words."""
    tried = (
        "the proxy retried it, in vain" if exchange.retried == "transient" else "it was not retried"
    )
    fixed = _FIXED.get(code)
    if fixed is not None:
        return fixed
    if code == "token_request_failed":
        return (
            "Criteo refused the proxy's app credentials, so nothing was sent: the token "
            f"endpoint {_token_words(detail)}; then restart the proxy."
        )
    if code == "token_endpoint_unavailable":
        where = (
            "Criteo's token endpoint failed"
            if who == "criteo"
            else "The proxy could not reach Criteo's token endpoint"
        )
        return (
            f"{where} (it {_token_words(detail, 120)}), so nothing was sent and it was not "
            "retried: send it again in a minute (the proxy backs off up to 30 s); if it "
            "persists, check the network or HTTPS_PROXY."
        )
    if code == "upstream_unavailable":
        return (
            f"The proxy could not reach Criteo ({_clip(detail)}); {tried}: check the network, "
            "DNS or HTTPS_PROXY, then send it again."
        )
    if code == "upstream_timeout":
        return (
            f"Criteo did not answer in time ({_clip(detail)}); {tried}: send it again later, "
            "or raise upstream.response_timeout for slow reports."
        )
    if code == "rate_limited":
        frees = _FREES_AT.search(detail)
        until = f" until {frees.group(1)}" if frees else ""
        return (
            f"Criteo's rate-limit window is spent{until}, longer than the proxy may wait "
            "(rate_limit.max_wait), so it was not sent: send it again after the reset, or "
            "send fewer requests at a time."
        )
    if code in ("method_not_allowed", "path_not_allowed"):
        return (
            f"The proxy's security settings refuse this ({_clip(detail)}): ask whoever runs "
            "the proxy to allow it."
        )
    return f"The proxy refused this request ({_clip(detail)})."


_FIXED: Final = {
    "host_not_allowed": (
        "The proxy refused the Host header (a DNS-rebinding guard): call it as localhost or "
        "127.0.0.1, or add this name to security.allowed_hosts."
    ),
    "origin_not_allowed": (
        "A web page on another site sent this and the proxy refused it: add that page's "
        "origin to security.allowed_origins if you trust it."
    ),
    "proxy_key_required": (
        "The proxy needs an inbound key: send an X-Proxy-Key header with one of "
        "security.api_keys (in a browser, open /_proxy/?key=<that key> once)."
    ),
    "body_too_large": (
        "The request body is larger than limits.max_body_bytes: send a smaller body, or "
        "raise that limit."
    ),
    "absolute_uri_not_allowed": (
        "The request named another host as its target: send it to the proxy with a plain "
        "path, such as /<version>/advertisers/me."
    ),
    "body_timeout": (
        "The client stopped sending its request body: check the client and its network, "
        "then send the request again."
    ),
    "not_found": (
        "No such proxy endpoint: the proxy serves /_proxy/health, /_proxy/ready, "
        "/_proxy/metrics and the console at /_proxy/."
    ),
}


def _oauth_advice(status: int, body: bytes | None) -> str:
    """A client's own token request: never its error text, which may echo what it sent."""
    error = ""
    envelope = _parse(body)
    if isinstance(envelope, dict) and isinstance(envelope.get("error"), str):
        error = envelope["error"] if _OAUTH_ERROR.fullmatch(envelope["error"]) else ""
    said = f"{status} {error}".strip()
    return (
        f"Criteo's token endpoint refused this client's own token request ({said}): check "
        "the client_id and client_secret the client sends (the proxy passes /oauth2/ "
        "requests on as they are)."
    )


def _quote(status: int, said: _Said, *, quote_detail: bool) -> str:
    parts = [said.title]
    if quote_detail and said.detail and said.detail != said.title:
        parts.append(said.detail)
    words = ": ".join(part for part in parts if part)
    return f'{status} "{_clip(words)}"' if words else str(status)


def _read_envelope(body: bytes | None) -> _Said:
    envelope = _parse(body)
    errors = envelope.get("errors") if isinstance(envelope, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, dict):
        return _Said("", "")
    title = first.get("title") or first.get("code") or ""
    detail = first.get("detail") or ""
    return _Said(title if isinstance(title, str) else "", detail if isinstance(detail, str) else "")


def _parse(body: bytes | None) -> object:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        return None


def _token_words(detail: str, limit: int = 190) -> str:
    """A token error's detail without its "POST <url>", its end kept: the hint is there."""
    words = " ".join(_TOKEN_REQUEST.sub("", detail, count=1).split())
    return words if len(words) <= limit else "…" + words[-(limit - 1) :]


def _clip(text: str, limit: int = _MAX_QUOTE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_sentence(text: str) -> str:
    """On one line, printable, within MAX_ADVICE_CHARS."""
    text = "".join(c if c.isprintable() else " " for c in text)
    return _clip(text, MAX_ADVICE_CHARS)
