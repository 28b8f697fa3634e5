"""One serving session: the event loop, the stop signals, start, announce, drain.

``cli`` says what to print; this module starts the server, tells it the
addresses through ``announce`` and stops gracefully on SIGTERM / SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine

from .app import HANDLERS, build_app
from .schema import Config
from .server import start_server, stop_server

log = logging.getLogger("criteo_proxy.cli")


def run_event_loop(main: Coroutine[object, object, None]) -> None:
    """Serve on uvloop when it is installed (``pip install 'criteo-proxy[speed]'``)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def serve(
    config: Config,
    *,
    announce: Callable[[list[str]], None],
    on_second_signal: Callable[[], None],
) -> None:
    """Serve CONFIG until a stop signal; ANNOUNCE gets the addresses once listening."""
    stop = catch_stop_signals(on_second_signal)
    app = build_app(config)
    server = await start_server(app, config)
    try:
        loop_kind = (
            "uvloop" if "uvloop" in type(asyncio.get_running_loop()).__module__ else "asyncio"
        )
        log.info("serving on %s (event loop: %s)", ", ".join(server.urls), loop_kind)
        announce(server.urls)
        await stop.wait()
    finally:
        await stop_server(server, app[HANDLERS], config.listen.shutdown_grace)


def catch_stop_signals(on_second_signal: Callable[[], None]) -> asyncio.Event:
    """Set on the first SIGTERM / SIGINT; a second one calls ON_SECOND_SIGNAL.

    Installed before the server announces itself, so that a signal sent the
    moment it says "serving on" is already a graceful stop.
    """
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            on_second_signal()
            return
        log.info("stopping: in-flight requests may finish (listen.shutdown_grace)")
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    return stop
