"""``criteo-proxy demo``: the embedded fake Criteo on a free loopback port, and the
config that points the proxy at it with the fake's own public credentials."""

from __future__ import annotations

import dataclasses
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
