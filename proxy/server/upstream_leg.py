"""The upstream leg of one profile's app, for the app's life: the shared session, the
fleet member (DESIGN 11), the token provider and the forwarder, built at start-up and
closed at shutdown (a refresh in flight is let finish within the grace)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

from aiohttp import web

from proxy.config.addresses import env_proxy_for
from proxy.config.schema import ConfigError
from proxy.forwarding.forwarder import Forwarder, ForwardSettings
from proxy.forwarding.retries import TransientPolicy
from proxy.forwarding.upstream import build_session
from proxy.observability.logs import CURRENT_PROFILE
from proxy.server.state import ProcessState, ProfileState
from proxy.tokens.provider import TokenProvider
from proxy.tokens.wiring import open_token_provider

if TYPE_CHECKING:  # the fleet's libraries load only with coordination on
    from proxy.coordination.member import Member

PROCESS: Final = web.AppKey("PROCESS", ProcessState)
PROFILE: Final = web.AppKey("PROFILE", ProfileState)
TOKENS: Final = web.AppKey("TOKENS", TokenProvider)
FORWARDER: Final = web.AppKey("FORWARDER", Forwarder)


async def upstream_context(app: web.Application) -> AsyncIterator[None]:
    process, profile = app[PROCESS], app[PROFILE]
    config = profile.config
    owns_session = process.session is None
    session = process.session = process.session or build_session(process.config.upstream)
    member = _fleet_member(profile)
    try:
        if member is not None:
            await member.start()
            profile.pacer.share_with(member)
        tokens = await open_token_provider(
            config,
            session,
            clock=process.clock,
            on_fetch=profile.metrics.count_token_fetch,
            member=member,
        )
    except ConfigError:
        if member is not None:
            await member.aclose()
        if owns_session:
            await session.close()
            process.session = None
        raise
    settings = ForwardSettings(
        upstream_url=config.upstream.url,
        retry_body_limit_bytes=config.retry.body_limit,
        max_body_bytes=config.limits.max_body_bytes,
        response_timeout_seconds=config.upstream.response_timeout,
        transient=TransientPolicy.from_config(config.retry.transient),
        http_proxy=env_proxy_for(config.upstream.url),
    )
    profile.tokens = app[TOKENS] = tokens
    app[FORWARDER] = Forwarder(
        session, tokens, settings, profile.metrics, profile.pacer, profile.versions
    )
    # The server starts even when the token endpoint is down; the warm-up only logs.
    # Its log lines (and the fetch it starts) are this profile's.
    context = contextvars.copy_context()
    context.run(CURRENT_PROFILE.set, profile.name)
    warm_up = asyncio.create_task(_warm_up_once_listening(process, tokens), context=context)
    try:
        yield
    finally:
        warm_up.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await warm_up
        deadline = process.shutdown_deadline
        left = 0.0 if deadline is None else deadline - asyncio.get_running_loop().time()
        await tokens.aclose(wait_seconds=max(0.0, left))
        if member is not None:
            await member.aclose()
        if owns_session:
            await session.close()
            process.session = None


async def _warm_up_once_listening(process: ProcessState, tokens: TokenProvider) -> None:
    await process.listening.wait()
    await tokens.warm_up()


def _fleet_member(profile: ProfileState) -> Member | None:
    if not profile.config.coordination.enabled:
        return None
    from proxy.coordination.member import Member  # redis-py: only with coordination on

    metrics = profile.metrics
    member = Member.for_profile(
        profile.config,
        on_error=metrics.count_coordination_error,
        on_state=metrics.set_coordination_up,
    )
    metrics.set_coordination_up(False)
    profile.member = member
    return member
