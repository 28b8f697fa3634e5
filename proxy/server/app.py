"""The aiohttp application of one profile: routes, the middleware, the upstream leg's life."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.config.schema import DEFAULT_PROFILE, Config
from proxy.console.history import build_record
from proxy.console.routes import (
    SECURITY_HEADERS,
    add_console_routes,
    is_answered_poll,
    is_console_route,
)
from proxy.errors import ERROR_HEADER, ProxyError, build_error_body
from proxy.exchange import Exchange
from proxy.forwarding.forwarder import is_oauth_path
from proxy.forwarding.headers import REQUEST_ID_HEADER, add_cors_headers
from proxy.observability.access_log import log_access
from proxy.observability.logs import CURRENT_PROFILE
from proxy.observability.metrics import METRICS_CONTENT_TYPE
from proxy.observability.request_ids import pick_request_id
from proxy.server.guards import GuardPolicy, admit
from proxy.server.local_token import LOCAL_TOKEN_PATH, build_local_token_responder
from proxy.server.state import (
    ProcessState,
    ProfileState,
    build_process_state,
    build_profile_state,
)
from proxy.server.upstream_leg import FORWARDER, PROCESS, PROFILE, TOKENS, upstream_context
from proxy.tokens.token import Clock, TokenError

log = logging.getLogger("criteo_proxy.app")

HANDLERS: Final[web.AppKey[set[asyncio.Task[object]]]] = web.AppKey("HANDLERS")


def compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def build_app(
    config: Config,
    *,
    clock: Clock = time.monotonic,
    process: ProcessState | None = None,
    profile_name: str = DEFAULT_PROFILE,
) -> web.Application:
    """The app of one profile. Alone (no PROCESS), it is its own process: it makes and
    closes the upstream session; with profiles, they share PROCESS and its session."""
    if process is None:  # alone: it listens as soon as it is served
        process = build_process_state(config, clock=clock)
        process.listening.set()
    profile = build_profile_state(profile_name, config, process.metrics)
    process.profiles[profile_name] = profile
    local_token = config.tokens.local_token_endpoint
    policy = GuardPolicy.from_config(
        config.security,
        console_cookie=f"criteo_proxy_console_{profile_name}",
        rules_applied_by_handler=frozenset({LOCAL_TOKEN_PATH}) if local_token else frozenset(),
    )
    serving = build_request_context(policy, process, profile)
    app = web.Application()
    app[PROCESS] = process
    app[PROFILE] = profile
    app[HANDLERS] = process.handlers
    app.cleanup_ctx.append(upstream_context)
    # Expect is answered by us after the guards, on every route (aiohttp would answer
    # 100 Continue, or 417, before any middleware runs).
    router = app.router

    def add_route(method: str, path: str, handler: Handler) -> None:
        wrapped = serving(ignoring_exchange(handler))
        if method == "GET":  # and HEAD, as aiohttp's add_get does
            router.add_get(path, wrapped, expect_handler=defer_expect)
        else:
            router.add_route(method, path, wrapped, expect_handler=defer_expect)

    add_route("GET", "/_proxy/health", health)
    add_route("GET", "/_proxy/ready", ready)
    add_route("GET", "/_proxy/metrics", metrics_endpoint)
    if process.config.console.enabled:
        add_console_routes(add_route, process, profile, policy)
    add_route("*", "/_proxy/{tail:.*}", reserved_not_found)
    if local_token:
        router.add_post(
            LOCAL_TOKEN_PATH,
            serving(build_local_token_responder(policy, process, profile, FORWARDER)),
            expect_handler=defer_expect,
        )
    router.add_route("*", "/{tail:.*}", serving(forward_request), expect_handler=defer_expect)
    return app


Responder = Callable[[web.Request, Exchange], Awaitable[web.StreamResponse]]


def build_request_context(
    policy: GuardPolicy, process: ProcessState, profile: ProfileState
) -> Callable[[Responder], Handler]:
    """What every route's handler is wrapped in: request id, the guards, the error
    envelope, CORS, metrics, the access line and the console's record.

    A wrapper of each handler, not a middleware and an on_response_prepare signal:
    those cost every request two more trips through the await chain and a signal
    dispatch (issue 15's profile).
    """
    handlers = process.handlers
    metrics = profile.metrics
    access_log_enabled = process.config.logging.access_log
    history = process.history
    keep_error_bodies = process.config.console.error_bodies
    console_enabled = process.config.console.enabled
    # Logs say profile=<name> when profiles are configured (DESIGN 9).
    log_profile = profile.name if process.config.profiles else None

    def finish(request: web.Request, exchange: Exchange, status: int) -> None:
        if access_log_enabled:
            quiet = exchange.reserved and is_answered_poll(request, status)
            _log_access(request, exchange, status, log_profile, debug=quiet)
        if history.max_records and (not exchange.reserved or exchange.proxy_error):
            tokens = profile.tokens
            token = tokens.cached_token() if tokens is not None else None
            history.append(
                build_record(
                    history,
                    profile=profile.name,
                    method=request.method,
                    raw_path=request.raw_path,
                    status=status,
                    exchange=exchange,
                    duration_seconds=time.perf_counter() - exchange.started,
                    keep_error_body=keep_error_bodies and not is_oauth_path(exchange.target),
                    scrub=None if token is None else token.access_token,
                    quote_detail=keep_error_bodies,
                )
            )

    def serving(respond: Responder) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            exchange = Exchange(
                pick_request_id(request.headers.get(REQUEST_ID_HEADER)), time.perf_counter()
            )
            if log_profile is not None:
                CURRENT_PROFILE.set(log_profile)  # this request's task only
            task = asyncio.current_task()
            if task is not None:
                handlers.add(task)
            try:
                response = admit(policy, request, exchange) or await respond(request, exchange)
            except ProxyError as exc:
                log.warning("request %s: %s %s", exchange.request_id, exc.code, exc.detail)
                response = error_response(exc, exchange.request_id)
                if console_enabled and is_console_route(request):
                    response.headers.update(SECURITY_HEADERS)
                exchange.proxy_error = exc.code
                exchange.who = exc.who
                exchange.error_body = response.body if isinstance(response.body, bytes) else None
            except web.HTTPException as exc:  # aiohttp's own answer (417 to an Expect)
                if exchange.cors_origin is not None:
                    add_cors_headers(exchange.cors_origin, exc.headers)
                raise
            except asyncio.CancelledError:
                # The client left, or shutdown_grace ran out: still one access line (499,
                # nginx's "client closed request"), then let the cancellation go on.
                log.info(
                    "request %s: cancelled before its answer was complete", exchange.request_id
                )
                finish(request, exchange, 499)
                raise
            finally:
                handlers.discard(task)
            status = response.status
            if response.prepared:  # streamed (CORS headers set before): the answer is out
                if exchange.aborted:
                    status = 502  # the client saw a broken transfer: count and log it as one
            else:
                response_headers = response.headers
                response_headers[REQUEST_ID_HEADER] = exchange.request_id
                if exchange.cors_origin is not None:
                    add_cors_headers(exchange.cors_origin, response_headers)
                body = response.body if isinstance(response, web.Response) else None
                exchange.bytes_out = len(body) if isinstance(body, bytes) else 0
            metrics.count_request(request.method, status, exchange.bytes_in, exchange.bytes_out)
            finish(request, exchange, status)
            return response

        return handler

    return serving


def error_response(error: ProxyError, request_id: str) -> web.Response:
    return web.Response(
        status=error.status,
        reason=error.reason,  # the cause, for tools that show only the status line
        body=build_error_body(error, request_id),
        content_type="application/json",
        headers={ERROR_HEADER: error.code},
    )


def _log_access(
    request: web.Request, exchange: Exchange, status: int, profile: str | None, *, debug: bool
) -> None:
    log_access(
        method=request.method,
        path_and_query=request.raw_path,
        status=status,
        bytes_out=exchange.bytes_out,
        duration_seconds=time.perf_counter() - exchange.started,
        upstream_seconds=exchange.upstream_seconds,
        retried=exchange.retried,
        request_id=exchange.request_id,
        profile=profile,
        debug=debug,
    )


async def defer_expect(request: web.Request) -> None:
    """Answer nothing yet: the forwarder answers ``Expect`` once the guards admitted it."""


def forward_request(request: web.Request, exchange: Exchange) -> Awaitable[web.StreamResponse]:
    # Not a coroutine of its own: the forwarder's is awaited by the wrapper directly.
    return request.app[FORWARDER].handle(request, exchange)


def ignoring_exchange(handler: Handler) -> Responder:
    """A route's handler that needs only the request (the reserved ones)."""

    def respond(request: web.Request, _exchange: Exchange) -> Awaitable[web.StreamResponse]:
        return handler(request)

    return respond


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, dumps=compact_json)


async def ready(request: web.Request) -> web.Response:
    """200 when a token is cached or can be fetched now; never shows the token itself."""
    tokens = request.app[TOKENS]
    try:
        token = await tokens.get_token()
    except TokenError as exc:
        return web.json_response(
            {
                "status": "not_ready",
                "code": exc.code,
                "reason": exc.detail,
                "backoff_seconds": round(tokens.backoff_remaining_seconds(), 1),
            },
            status=503,
            reason=exc.reason,
            dumps=compact_json,
        )
    remaining = token.expires_at - request.app[PROCESS].clock()
    last_error = tokens.last_error
    return web.json_response(
        {
            "status": "ready",
            "token_expires_in_seconds": round(remaining),
            "last_error": None if last_error is None else last_error.detail,
        },
        dumps=compact_json,
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[PROCESS].metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE}
    )


async def reserved_not_found(request: web.Request) -> web.Response:
    raise ProxyError(
        404,
        "not_found",
        f"{request.path} is reserved for the proxy; it serves /_proxy/health, /_proxy/ready, "
        "/_proxy/metrics and (unless console.enabled is false) the console at /_proxy/",
    )
