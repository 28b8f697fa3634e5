"""The console's routes: the page, its assets, /_proxy/status and /_proxy/requests.

The page is static (``static/``, shipped in the wheel: no CDN, no web font)
and reads only the two JSON documents, so any tool can read them too. Every
answer carries a strict Content-Security-Policy (no inline script, nothing from
elsewhere); the page inserts every value as text.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.console.history import RequestRecord
from proxy.console.sessions import ConsoleAccess
from proxy.console.status import build_status
from proxy.errors import ProxyError

if TYPE_CHECKING:  # the server hands its state in: the console never imports it
    from proxy.server.state import ProcessState, ProfileState

# The console's routes (as the router names them), and the pages a browser opens.
CONSOLE_PAGES: Final = frozenset({"/_proxy/", "/_proxy/console"})
CONSOLE_ROUTES: Final = CONSOLE_PAGES | {
    "/_proxy/status",
    "/_proxy/requests",
    "/_proxy/static/{name}",
}
# What the page fetches once a second: logged at DEBUG when answered (DESIGN 8).
POLLED_ROUTES: Final = frozenset({"/_proxy/status", "/_proxy/requests"})
CONSOLE_KEY_PARAMETER: Final = "key"
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_ASSETS: Final = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
_PAGE: Final = "console.html"
_MAX_NUMBER_DIGITS: Final = 18  # within a 64-bit integer
# One answer of /_proxy/requests stops before it would pass this: JSON escapes make a
# record up to six times its size in memory (a control character is \u0001), so every
# record at once could be many times the history's own bound. The client asks again
# with after= (the console does until it has status.console.last_seq).
MAX_ANSWER_BYTES: Final = 1024 * 1024


def is_console_route(request: web.Request) -> bool:
    """Whether the console's routes answer REQUEST (its error answers carry its headers)."""
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in CONSOLE_ROUTES


def is_answered_poll(request: web.Request, status: int) -> bool:
    """Whether REQUEST is the console's polling, answered (refused ones are not)."""
    if status >= 400:
        return False
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in POLLED_ROUTES


def _read_asset(name: str) -> bytes:
    return importlib.resources.files("proxy.console").joinpath("static", name).read_bytes()


def _json(document: object) -> web.Response:
    return web.Response(
        body=json.dumps(document, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=SECURITY_HEADERS,
    )


def add_console_routes(
    add_route: Callable[[str, str, Handler], None],
    process: ProcessState,
    profile: ProfileState,
    policy: ConsoleAccess,
) -> None:
    """The console's routes, before the catch-all /_proxy/ 404 (ADD_ROUTE wraps each)."""
    page = _read_asset(_PAGE)
    assets = {name: (_read_asset(name), kind) for name, kind in _ASSETS.items()}

    async def console_page(request: web.Request) -> web.Response:
        offered = request.query.get(CONSOLE_KEY_PARAMETER)
        if offered is not None and policy.api_keys:
            # A good key is swapped for a session cookie and dropped from the address
            # bar (and the browser's history) at once. A wrong one opens nothing, even
            # for a browser that has a session already.
            if not policy.has_valid_proxy_key(offered):
                raise ProxyError(
                    401, "proxy_key_required", f"?{CONSOLE_KEY_PARAMETER}= is not a valid key"
                )
            sessions = policy.console_sessions
            response = web.Response(
                status=303, headers={**SECURITY_HEADERS, "Location": request.path}
            )
            response.set_cookie(
                sessions.cookie_name,
                sessions.open(),
                path="/_proxy/",
                httponly=True,
                samesite="Strict",
            )
            return response
        return web.Response(
            body=page, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS
        )

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["name"])
        if found is None:
            raise ProxyError(404, "not_found", f"{request.path}: no such console file")
        body, kind = found
        return web.Response(body=body, content_type=kind, headers=SECURITY_HEADERS)

    async def status(request: web.Request) -> web.Response:
        return _json(build_status(process, fallback_listen=_local_address(request)))

    async def requests(request: web.Request) -> web.Response:
        after = _whole_number(request, "after", 0)
        limit = _whole_number(request, "limit", process.history.max_records)
        records = process.history.after(after, limit)
        return web.Response(
            body=_bounded_requests_answer(records),
            content_type="application/json",
            headers=SECURITY_HEADERS,
        )

    for path in ("/_proxy/", "/_proxy/console"):
        add_route("GET", path, console_page)
    add_route("GET", "/_proxy/static/{name}", asset)
    add_route("GET", "/_proxy/status", status)
    add_route("GET", "/_proxy/requests", requests)


def _bounded_requests_answer(records: list[RequestRecord]) -> bytes:
    """``{"requests":[...]}`` of the oldest RECORDS that fit in MAX_ANSWER_BYTES (at
    least one: a single record is far below it)."""
    parts: list[bytes] = []
    size = len(b'{"requests":[]}')
    for record in records:
        part = json.dumps(record.to_json(), separators=(",", ":")).encode()
        size += len(part) + 1
        if parts and size > MAX_ANSWER_BYTES:
            break
        parts.append(part)
    return b'{"requests":[' + b",".join(parts) + b"]}"


def _whole_number(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    # ASCII digits only: str.isdigit() takes "²" (which int() refuses) and int() takes
    # Arabic-Indic digits or "1_000"; bounded, so that int() never parses a huge string.
    if not (0 < len(text) <= _MAX_NUMBER_DIGITS and text.isascii() and text.isdigit()):
        raise ProxyError(
            400, "bad_request", f"{name}: expected a whole number of 0 or more, got {text[:40]!r}"
        )
    return int(text)


def _local_address(request: web.Request) -> str:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host = str(sockname[0])
        return f"http://[{host}]:{sockname[1]}" if ":" in host else f"http://{host}:{sockname[1]}"
    return f"unix:{sockname}" if isinstance(sockname, str) else ""
