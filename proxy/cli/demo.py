"""``criteo-proxy demo``: the embedded fake Criteo on a free loopback port, the config
that points the proxy at it with the fake's own public credentials, and a port that is
free for the proxy when 8080 is not."""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from proxy.config.schema import Config, Secret
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo


@asynccontextmanager
async def running_fake_criteo() -> AsyncIterator[str]:
    """Serve a fresh fake Criteo on 127.0.0.1 (any free port); yields its base URL."""
    # Metered like Criteo (250 calls a minute), so that the console has windows to show.
    fake = FakeCriteo(rate_limit=250, rate_window_seconds=60)
    runner = web.AppRunner(fake.build_app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def build_demo_config(config: Config, fake_url: str) -> Config:
    """CONFIG aimed at the fake: never real credentials, even when they are set."""
    return dataclasses.replace(
        config,
        profiles=(),  # the demo is one fake app
        upstream=dataclasses.replace(config.upstream, url=fake_url, token_url=None),
        credentials=dataclasses.replace(
            config.credentials,
            grant_type="client_credentials",
            client_id=DEMO_CLIENT_ID,
            client_secret=Secret(DEMO_CLIENT_SECRET),
        ),
    )


def move_off_a_taken_port(config: Config) -> tuple[Config, int | None]:
    """CONFIG on any free port if its own is in use (Jenkins, Tomcat and many dev servers
    live on 8080), and the port it left; for a demo run without --port."""
    listen = config.listen
    if listen.unix_socket or listen.port == 0 or not is_port_in_use(listen.host, listen.port):
        return config, None
    free = dataclasses.replace(config, listen=dataclasses.replace(listen, port=0))
    return free, listen.port


def is_port_in_use(host: str, port: int) -> bool:
    """Would the server's bind fail for want of the port? Probed as aiohttp binds (with
    SO_REUSEADDR off Windows); any other trouble is for the real bind to report."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError:
        return False
    with socket.socket(family, kind, proto) as probe:
        if os.name != "nt":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False
