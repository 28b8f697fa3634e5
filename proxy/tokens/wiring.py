"""The token part as a config asks for it: the grant, the fleet's side, the provider."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp

from proxy.config.addresses import env_proxy_for
from proxy.config.schema import Config, CredentialsConfig
from proxy.coordination.outcomes import Unavailable, Unreadable
from proxy.tokens.fleet import FleetTokens
from proxy.tokens.grants import ClientCredentialsGrant
from proxy.tokens.provider import TokenProvider
from proxy.tokens.refresh_grant import RefreshTokenGrant
from proxy.tokens.store import StoredGrant, TokenStore, TokenStoreError
from proxy.tokens.token import Clock, Grant

if TYPE_CHECKING:  # the fleet's libraries load only with coordination on
    from proxy.coordination.member import Member

log = logging.getLogger("criteo_proxy.tokens")

# A refresh holds the fleet's lock this much longer than a token request can take
# (DESIGN 11), so that its lease outlasts the request it guards.
_REFRESH_LEASE_EXTRA_SECONDS = 5.0


async def open_grant(credentials: CredentialsConfig, fleet: Member | None = None) -> Grant:
    """The grant the server runs with; an unusable token store is a TokenStoreError here.

    In a fleet, a missing store is no error while Redis holds the app's refresh token
    (it is written to the file then); missing while Redis cannot be read, it still is.
    """
    if credentials.grant_type != "authorization_code":
        return ClientCredentialsGrant(
            client_id=credentials.client_id, client_secret=credentials.client_secret
        )
    store = TokenStore(credentials.token_store)
    try:
        stored = await asyncio.to_thread(store.load)
    except TokenStoreError as exc:
        if not exc.missing or fleet is None:
            raise
        stored = await _stored_from_fleet(store, credentials.client_id, fleet, exc)
    grant = RefreshTokenGrant(
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
        store=store,
        stored=stored,
        fleet=fleet,
    )
    if fleet is not None:
        await grant.sync_with_fleet()
    return grant


async def _stored_from_fleet(
    store: TokenStore, client_id: str, fleet: Member, missing: TokenStoreError
) -> StoredGrant:
    try:
        if not fleet.active:
            raise Unavailable(fleet.link.last_error or "down")
        shared = await fleet.refresh_token.read()
    except (Unavailable, Unreadable) as exc:
        raise TokenStoreError(f"{missing} (coordination: Redis cannot be read: {exc})") from exc
    if shared is None:
        raise missing
    await asyncio.to_thread(
        store.save, client_id, shared.refresh_token, generation=shared.generation
    )
    log.info("took the fleet's refresh token into the missing %s", store.path)
    return await asyncio.to_thread(store.load)


def fleet_tokens(config: Config, member: Member, *, clock: Clock) -> FleetTokens:
    upstream = config.upstream
    lease = upstream.connect_timeout + upstream.response_timeout
    if config.credentials.grant_type == "authorization_code":
        lease += _REFRESH_LEASE_EXTRA_SECONDS
    return FleetTokens(
        member, lease_seconds=lease, margin_seconds=config.tokens.refresh_margin, clock=clock
    )


async def open_token_provider(
    config: Config,
    session: aiohttp.ClientSession,
    *,
    clock: Clock = time.monotonic,
    on_fetch: Callable[[bool], None] | None = None,
    grant: Grant | None = None,
    member: Member | None = None,
) -> TokenProvider:
    """The provider for CONFIG; GRANT replaces the configured one (``authorize``);
    MEMBER, when coordination is on, shares the app's tokens with the fleet."""
    token_url = config.upstream.effective_token_url
    return TokenProvider(
        session,
        grant or await open_grant(config.credentials, member),
        token_url=token_url,
        margin_seconds=config.tokens.refresh_margin,
        timeout_seconds=config.upstream.response_timeout,
        http_proxy=env_proxy_for(token_url),
        clock=clock,
        on_fetch=on_fetch,
        fleet=None if member is None else fleet_tokens(config, member, clock=clock),
    )
