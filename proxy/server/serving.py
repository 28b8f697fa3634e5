"""One serving session: the event loop, the stop signals, start, announce, drain.

``cli`` says what to print; this module starts the server, tells it the
addresses through ``announce`` and stops gracefully on SIGTERM / SIGINT.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
import time
from collections.abc import Callable, Coroutine

from proxy.config.schema import DEFAULT_PROFILE, Config
from proxy.forwarding.upstream import build_session
from proxy.server.app import build_app
from proxy.server.listeners import RunningServer, start_server, stop_servers
from proxy.server.state import build_process_state

log = logging.getLogger("criteo_proxy.cli")


def run_event_loop(main: Coroutine[object, object, None]) -> None:
    """Serve on uvloop when it is installed (``pip install 'criteo-proxy[speed]'``)."""
    if importlib.util.find_spec("uvloop") is None:
        # Not an ImportError caught around asyncio.run: that would be the context of
        # every traceback the server ever prints.
        asyncio.run(main)
        return
    import uvloop

    uvloop.run(main)


async def serve(
    config: Config,
    *,
    announce: Callable[[str, list[str]], None],
    on_second_signal: Callable[[], None],
) -> None:
    """Serve every profile of CONFIG until a stop signal; ANNOUNCE(profile, urls) is
    told each one's addresses once all listen (``default`` first).

    One process, one upstream session (one connection pool) for all profiles; each
    has its own app on its own site, with its own token, windows and guards.
    """
    stop = catch_stop_signals(on_second_signal)
    process = build_process_state(config, clock=time.monotonic)
    process.session = build_session(config.upstream)
    servers: list[RunningServer] = []
    try:
        for profile in config.all_profiles:
            app = build_app(profile, process=process, profile_name=profile.name)
            server = await start_server(app, profile)
            servers.append(server)
            process.profiles[profile.name].listen_urls[:] = server.urls
        process.listening.set()
        loop_kind = (
            "uvloop" if "uvloop" in type(asyncio.get_running_loop()).__module__ else "asyncio"
        )
        for profile, server in zip(config.all_profiles, servers, strict=True):
            name = "" if profile.name == DEFAULT_PROFILE else f"profile {profile.name}: "
            log.info("%sserving on %s (event loop: %s)", name, ", ".join(server.urls), loop_kind)
        for profile, server in zip(config.all_profiles, servers, strict=True):
            announce(profile.name, server.urls)
        await stop.wait()
    finally:
        grace = config.listen.shutdown_grace
        process.shutdown_deadline = asyncio.get_running_loop().time() + grace
        await stop_servers(servers, process.handlers, config.listen.shutdown_grace)
        await process.session.close()


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
        try:
            loop.add_signal_handler(sig, on_signal)
        except NotImplementedError:
            # Windows' loops: Ctrl-C cancels the serving task instead (asyncio.run), and
            # serve's cleanup still runs.
            log.debug("no handler for %s on this event loop", sig.name)
    return stop
