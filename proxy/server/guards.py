"""Inbound checks, made before anything is forwarded.

A process that adds a Criteo token to whatever reaches it is a credential; these
checks keep it usable only by the local user's own tools. Order: request target,
Host, browser origin (preflights are answered here), inbound key, method and
path rules. They apply to every path, ``/_proxy/*`` included, except that
``/_proxy/health`` needs no inbound key and path rules concern forwarded paths.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from proxy.config.addresses import parse_host, parse_origin
from proxy.config.schema import SecurityConfig
from proxy.console.routes import CONSOLE_KEY_PARAMETER, CONSOLE_PAGES, CONSOLE_ROUTES
from proxy.console.sessions import ConsoleSessions
from proxy.errors import ProxyError
from proxy.exchange import Exchange

RESERVED_PREFIX: Final = "/_proxy/"
HEALTH_PATH: Final = "/_proxy/health"
PROXY_KEY_HEADER: Final = "X-Proxy-Key"
_MAX_HOST_VERDICTS: Final = 64
READ_ONLY_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# Paths that read differently along the way (here, at gateways, at Criteo): encoded
# dots, slashes, backslashes and percent signs (decoded twice, %2573 is an 's'), dot
# segments, empty segments (servers may collapse //) and ;path parameters.
_AMBIGUOUS_PATH: Final = re.compile(r"%2e|%2f|%5c|%25|\\|/\.\.?(?:/|$)|//|;", re.IGNORECASE)
_SAFE_FETCH_SITES: Final = frozenset({"", "none", "same-origin"})


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardPolicy:
    """SecurityConfig, compiled once for the hot path."""

    allowed_hosts: frozenset[tuple[str, int | None]]
    allowed_origins: frozenset[str]
    read_only: bool
    allow_paths: tuple[re.Pattern[str], ...]
    deny_paths: tuple[re.Pattern[str], ...]
    api_keys: tuple[bytes, ...] = field(repr=False)
    # Routes whose handler applies read_only and the path rules itself, to what it sends
    # upstream (the local token endpoint: what it answers goes nowhere).
    rules_applied_by_handler: frozenset[str] = frozenset()
    console_sessions: ConsoleSessions = field(
        default_factory=lambda: ConsoleSessions("criteo_proxy_console"), repr=False
    )
    # Host header -> allowed?, so that a tool's one Host is parsed once, not per request.
    host_verdicts: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_config(
        cls,
        security: SecurityConfig,
        *,
        console_cookie: str = "criteo_proxy_console",
        rules_applied_by_handler: frozenset[str] = frozenset(),
    ) -> GuardPolicy:
        hosts = {parse_host(entry) for entry in security.allowed_hosts}
        return cls(
            allowed_hosts=frozenset(h for h in hosts if h is not None),
            allowed_origins=frozenset(
                o for o in map(parse_origin, security.allowed_origins) if o is not None
            ),
            read_only=security.read_only,
            # Case-insensitive: Criteo's routing may not tell /Statistics from /statistics.
            allow_paths=tuple(re.compile(p, re.IGNORECASE) for p in security.allow_paths),
            deny_paths=tuple(re.compile(p, re.IGNORECASE) for p in security.deny_paths),
            api_keys=tuple(key.reveal().encode() for key in security.api_keys),
            console_sessions=ConsoleSessions(console_cookie),
            rules_applied_by_handler=rules_applied_by_handler,
        )

    def has_valid_proxy_key(self, offered: str | None) -> bool:
        """Constant-time comparison against every configured key."""
        candidate = (offered or "").encode()
        matched = False
        for key in self.api_keys:
            matched |= hmac.compare_digest(candidate, key)
        return matched


def is_host_allowed(policy: GuardPolicy, host_header: str) -> bool:
    verdicts = policy.host_verdicts
    verdict = verdicts.get(host_header)
    if verdict is None:
        verdict = _judge_host(policy, host_header)
        if len(verdicts) >= _MAX_HOST_VERDICTS:  # Host is the client's to invent: bounded
            verdicts.clear()
        verdicts[host_header] = verdict
    return verdict


def _judge_host(policy: GuardPolicy, host_header: str) -> bool:
    parsed = parse_host(host_header)
    if parsed is None:
        return False
    host, port = parsed
    return (host, None) in policy.allowed_hosts or (
        port is not None and parsed in policy.allowed_hosts
    )


def parse_request_target(
    policy: GuardPolicy,
    raw_target: str,
    *,
    host_header: str | None = None,
    local_port: int | None = None,
) -> str:
    """The path and query to forward, from the raw request target.

    Origin-form (``/2026-07/x?a=1``) is forwarded as is. An absolute-form
    target is accepted only when it names the proxy itself: an allowed host on
    LOCAL_PORT (the port this connection came in on), agreeing with the Host
    header. The token only ever goes to the configured upstream, never to a
    host or another local service a client names.
    """
    if raw_target.startswith("/"):
        return raw_target
    try:
        url = URL(raw_target, encoded=True)
        authority = url.raw_authority
    except ValueError:
        url, authority = None, ""
    if url is not None and is_proxy_itself(policy, url, host_header, local_port):
        path = url.raw_path or "/"
        return f"{path}?{url.raw_query_string}" if url.raw_query_string else path
    raise ProxyError(
        400,
        "absolute_uri_not_allowed",
        f"the request target names another host or port ({authority[:200] or 'unknown'}); "
        "this proxy only forwards origin-form requests (GET /<version>/... with a Host header) "
        "to its upstream",
    )


def is_proxy_itself(
    policy: GuardPolicy, url: URL, host_header: str | None, local_port: int | None
) -> bool:
    """Does an absolute-form target name this proxy (allowed host, our port, same as Host)?"""
    if url.scheme not in ("http", "https"):
        return False
    default_port = 443 if url.scheme == "https" else 80
    target = parse_host(url.raw_authority)
    if target is None:
        return False
    host, port = target[0], target[1] if target[1] is not None else default_port
    if (host, None) not in policy.allowed_hosts and (host, port) not in policy.allowed_hosts:
        return False
    if local_port is not None and port != local_port:
        return False
    if host_header is None:
        return True
    named = parse_host(host_header)
    if named is None:
        return False
    named_host, named_port = named
    return named_host == host and (named_port or default_port) == port


def check_browser_origin(policy: GuardPolicy, headers: CIMultiDictProxy[str]) -> str | None:
    """The allowed origin of a browser request, None for a non-browser one; 403 otherwise."""
    origin = headers.get("Origin")
    fetch_site = headers.get("Sec-Fetch-Site", "").strip().lower()
    if origin is None and fetch_site in _SAFE_FETCH_SITES:
        return None
    normalized = parse_origin(origin) if origin else None
    if normalized is not None and normalized in policy.allowed_origins:
        return normalized
    shown = origin if origin is not None else f"Sec-Fetch-Site: {fetch_site}"
    raise ProxyError(
        403,
        "origin_not_allowed",
        f"cross-site browser request refused ({shown[:200]}); add the page's origin to "
        "security.allowed_origins to allow it",
    )


def has_console_access(policy: GuardPolicy, request: web.Request, route_path: str) -> bool:
    """A console path with our session cookie, or a console page bringing the key once."""
    if route_path not in CONSOLE_ROUTES:
        return False
    if policy.console_sessions.is_open(request.cookies.get(policy.console_sessions.cookie_name)):
        return True
    offered = request.query.get(CONSOLE_KEY_PARAMETER)
    return (
        route_path in CONSOLE_PAGES and offered is not None and policy.has_valid_proxy_key(offered)
    )


def check_method_and_path(
    policy: GuardPolicy, method: str, path: str, target: str, *, reserved: bool
) -> None:
    """read_only, then the path rules (for forwarded paths; RESERVED ones are the proxy's).

    PATH is the decoded path, TARGET the raw path and query to forward.
    """
    if policy.read_only and method not in READ_ONLY_METHODS:
        raise ProxyError(
            405,
            "method_not_allowed",
            f"{method} refused: security.read_only allows only GET, HEAD and OPTIONS",
        )
    if reserved or not (policy.allow_paths or policy.deny_paths):
        return
    raw_path = target.split("?", 1)[0]
    if _AMBIGUOUS_PATH.search(raw_path):
        # Under path rules, only plain paths pass (see _AMBIGUOUS_PATH).
        raise ProxyError(
            403,
            "path_not_allowed",
            "paths with dot or empty segments, ';' or encoded '.', '/', '\\' or '%' are "
            "refused while security.allow_paths / deny_paths are set",
        )
    if policy.allow_paths and not any(p.search(path) for p in policy.allow_paths):
        raise ProxyError(403, "path_not_allowed", f"{path} matches none of security.allow_paths")
    for pattern in policy.deny_paths:
        if pattern.search(path) or pattern.search(raw_path):
            raise ProxyError(
                403, "path_not_allowed", f"{path} matches security.deny_paths ({pattern.pattern})"
            )


def local_port_of(request: web.Request) -> int | None:
    """The TCP port this request came in on; None on a Unix socket."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return int(sockname[1]) if isinstance(sockname, tuple) and len(sockname) >= 2 else None


def is_preflight(request: web.Request) -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def build_preflight_response(policy: GuardPolicy, request: web.Request) -> web.Response:
    methods = READ_ONLY_METHODS if policy.read_only else None
    requested = request.headers.get("Access-Control-Request-Headers", "")
    allowed_headers = ", ".join(h for h in (requested.strip(), PROXY_KEY_HEADER) if h)
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": ", ".join(sorted(methods))
            if methods
            else "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE",
            "Access-Control-Allow-Headers": allowed_headers,
            "Access-Control-Max-Age": "600",
        },
    )


def admit(policy: GuardPolicy, request: web.Request, exchange: Exchange) -> web.Response | None:
    """Run every check on REQUEST: a ProxyError refuses it; a Response answers a preflight.

    The target to forward and an allowed browser origin are noted in EXCHANGE.

    A plain function called by the app's one middleware, rather than a
    middleware of its own: each middleware layer costs every request an
    extra trip through the await chain.
    """
    raw_target = request.raw_path
    host = request.headers.get("Host")
    if raw_target.startswith("/"):
        exchange.target = raw_target
    else:
        exchange.target = parse_request_target(
            policy, raw_target, host_header=host, local_port=local_port_of(request)
        )
    if host is not None and not is_host_allowed(policy, host):
        raise ProxyError(
            403,
            "host_not_allowed",
            f"Host {host[:200]!r} is not in security.allowed_hosts (a DNS-rebinding guard); "
            "add it there if this name is yours",
        )
    origin = check_browser_origin(policy, request.headers)
    if origin is not None:
        exchange.cors_origin = origin
        if is_preflight(request):
            return build_preflight_response(policy, request)
    # Which route answers decides what is reserved, never a decoded path: /_proxy%2Fhealth
    # is not the health route, it would be forwarded (with the token).
    resource = request.match_info.route.resource
    route_path = resource.canonical if resource is not None else ""
    exchange.reserved = route_path.startswith(RESERVED_PREFIX)
    needs_key = bool(policy.api_keys) and route_path != HEALTH_PATH
    if (
        needs_key
        and not policy.has_valid_proxy_key(request.headers.get(PROXY_KEY_HEADER))
        and not has_console_access(policy, request, route_path)
    ):
        detail = f"send a valid {PROXY_KEY_HEADER} header (one of security.api_keys)"
        if route_path in CONSOLE_ROUTES:  # a browser cannot send the header: say how else
            detail += (
                f"; in a browser, open /_proxy/?{CONSOLE_KEY_PARAMETER}=<that key> once "
                "(a restart of the proxy ends the console's sessions)"
            )
        raise ProxyError(401, "proxy_key_required", detail)
    if route_path not in policy.rules_applied_by_handler:
        check_method_and_path(
            policy, request.method, request.path, exchange.target, reserved=exchange.reserved
        )
    return None
