"""Listening: TCP or a Unix socket, the connection limits, the bind warning."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import stat
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from yarl import URL

from proxy.config.schema import DEFAULT_PROFILE, Config, ConfigError, ListenConfig

log = logging.getLogger("criteo_proxy.server")

# Request-line and header limits (aiohttp's defaults, stated): larger is a 400 / 431.
MAX_LINE_BYTES: Final = 8190
MAX_FIELD_BYTES: Final = 8190
MAX_HEADERS: Final = 128


@dataclass(frozen=True, slots=True)
class RunningServer:
    runner: web.AppRunner
    urls: list[str]


class ProxyRunner(web.AppRunner):
    """An AppRunner whose every request reaches the app's handlers (and its guards).

    Two kinds of request target would not: aiohttp 3.14 decodes the host of an
    absolute-form target (``GET http://xn--a.example HTTP/1.1``) while making the
    request object, and bad punycode raises there, outside any handler, killing the
    connection's task without an answer (the client hangs); and a target whose path
    does not start with ``/`` (``GET evil.example:80``, ``OPTIONS *``) matches no
    route, so aiohttp's own 404 answers it. Such a request is made with a
    placeholder URL instead; its raw target is kept, and the guards refuse it (400
    absolute_uri_not_allowed) like any target that is not the proxy itself.
    """

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        make_request = server.request_factory

        def make_request_tolerantly(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> BaseRequest:
            if message.path.startswith("/"):  # origin-form: nearly every request
                return make_request(message, payload, protocol, writer, task)
            try:
                if message.url.relative().raw_path.startswith("/"):  # what the router sees
                    return make_request(message, payload, protocol, writer, task)
            except ValueError:  # UnicodeError from the IDNA codec is a ValueError
                pass
            placeholder = message._replace(url=URL.build(path="/", encoded=True))
            return make_request(placeholder, payload, protocol, writer, task)

        server.request_factory = make_request_tolerantly
        return server


def build_server_options(listen: ListenConfig) -> dict[str, Any]:
    """aiohttp server settings; the tests serve the app with the very same ones."""
    return {
        "access_log": None,
        # stop_servers has already waited listen.shutdown_grace for in-flight requests.
        "shutdown_timeout": 1.0,
        # aiohttp closes a connection that has not sent a whole request within
        # keepalive_timeout of opening or of its last answer: our header timeout.
        "keepalive_timeout": listen.header_timeout,
        "max_line_size": MAX_LINE_BYTES,
        "max_field_size": MAX_FIELD_BYTES,
        "max_headers": MAX_HEADERS,
        # A client that leaves cancels its handler: it leaves the rate-limit queue,
        # its upstream request is closed, nothing lingers (token fetches are shielded).
        "handler_cancellation": True,
        # Request bodies reach Criteo as the client's bytes under the client's
        # Content-Encoding / Content-Length; aiohttp would inflate them by default.
        "auto_decompress": False,
    }


async def stop_servers(
    servers: list[RunningServer], handlers: set[asyncio.Task[object]], grace: float
) -> None:
    """Stop accepting on every site, give in-flight requests GRACE seconds, cancel the
    rest, clean up.

    aiohttp's own shutdown can wait twice its timeout for a handler that is
    stuck upstream; this bounds the whole stop by GRACE.
    """
    for server in servers:
        for site in list(server.runner.sites):
            await site.stop()
    pending = {task for task in handlers if not task.done()}
    if pending:
        log.info("waiting up to %g s for %d in-flight request(s)", grace, len(pending))
        _, still_running = await asyncio.wait(pending, timeout=grace)
        for task in still_running:
            task.cancel()
        if still_running:
            log.warning(
                "listen.shutdown_grace (%g s) ran out: cut off %d request(s)",
                grace,
                len(still_running),
            )
            await asyncio.wait(still_running, timeout=1)
    for server in servers:
        await server.runner.cleanup()


async def start_server(app: web.Application, config: Config) -> RunningServer:
    """Listen where the config says; a port in use is a ConfigError, not a traceback
    (naming ``profiles.<name>.listen...`` for a profile)."""
    listen = config.listen
    prefix = "" if config.name == DEFAULT_PROFILE else f"profiles.{config.name}."
    runner = ProxyRunner(app, **build_server_options(listen))
    await runner.setup()
    try:
        if listen.unix_socket:
            urls = [await _start_unix_site(runner, listen.unix_socket)]
        else:
            urls = await _start_tcp_site(runner, listen.host, listen.port)
    except ConfigError as exc:
        await runner.cleanup()
        raise ConfigError(prefix + str(exc)) from exc
    except BaseException:
        await runner.cleanup()
        raise
    if not listen.unix_socket and not is_loopback(listen.host) and not config.security.api_keys:
        log.warning(
            "%slistening on %s without security.api_keys: anyone who can reach this address can "
            "spend your Criteo token. Bind 127.0.0.1, publish the port on loopback only "
            "(docker run -p 127.0.0.1:8080:8080 ...), or set security.api_keys.",
            f"profile {config.name}: " if prefix else "",
            listen.host,
        )
    return RunningServer(runner, urls)


async def _start_tcp_site(runner: web.AppRunner, host: str, port: int) -> list[str]:
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        raise ConfigError(
            f"listen.port: cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(is another criteo-proxy running? pick another --port)"
        ) from exc
    return [_format_url(address) for address in runner.addresses]


async def _start_unix_site(runner: web.AppRunner, path: str) -> str:
    """Serve on a Unix socket that only its owner can open (mode 0600 from birth)."""
    remove_stale_socket(path)
    previous_umask = os.umask(0o177)
    try:
        await web.UnixSite(runner, path).start()
    except OSError as exc:
        raise ConfigError(
            f"listen.unix_socket: cannot listen on {path}: {exc.strerror or exc}"
        ) from exc
    finally:
        os.umask(previous_umask)
    os.chmod(path, 0o600)
    return f"unix:{path}"


def remove_stale_socket(path: str) -> None:
    """Replace a socket file left by a crashed run; refuse anything else that is there."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"listen.unix_socket: cannot inspect {path}: {exc.strerror}") from exc
    if not stat.S_ISSOCK(mode):
        raise ConfigError(
            f"listen.unix_socket: {path} exists and is not a socket; remove it or pick another path"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody answers: a leftover of a crashed run
        return
    finally:
        probe.close()
    raise ConfigError(f"listen.unix_socket: {path} is in use by a running server")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _format_url(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host, port = address[0], address[1]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
