"""The grants: what each kind of Criteo app sends to the token endpoint.

client_credentials for most apps; authorization_code once (``criteo-proxy
authorize``), then refresh_token at run time, keeping a rotated refresh token
in the token store before its access token is used. Each says whom to blame
when the endpoint says no, and which of its values are secrets. ``build_token_provider``
makes the provider that a config's credentials ask for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import aiohttp

from proxy.config.addresses import env_proxy_for
from proxy.config.schema import (
    CLIENT_ID_ENV_VAR,
    CLIENT_SECRET_ENV_VAR,
    Config,
    CredentialsConfig,
    Secret,
)
from proxy.tokens.provider import TokenProvider
from proxy.tokens.refresh_grant import RefreshTokenGrant
from proxy.tokens.store import TokenStore, TokenStoreError
from proxy.tokens.token import Clock, Grant, Token, TokenError, TokenRequest

log = logging.getLogger("criteo_proxy.tokens")

_CREDENTIALS_HINT: Final = f"check {CLIENT_ID_ENV_VAR} / {CLIENT_SECRET_ENV_VAR}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCredentialsGrant:
    client_id: str
    client_secret: Secret

    @property
    def cache_key(self) -> str:
        return f"client_credentials:{self.client_id}"

    def rejection_hint(self, oauth_error: str) -> str:
        return _CREDENTIALS_HINT

    def build_form(self) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret.reveal(),
        }

    def secrets(self) -> list[str]:
        return [self.client_secret.reveal()]

    @property
    def rotates(self) -> bool:
        return False

    async def obtain(self, request: TokenRequest) -> Token:
        return await request(self.build_form())


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationCodeGrant:
    """The one-time exchange of a consent code (``criteo-proxy authorize``)."""

    client_id: str
    client_secret: Secret
    code: str = field(repr=False)
    redirect_uri: str
    store: TokenStore

    @property
    def cache_key(self) -> str:
        return f"authorization_code:{self.client_id}"

    def rejection_hint(self, oauth_error: str) -> str:
        if oauth_error == "invalid_grant":
            return (
                "the code was refused (codes are single use and short-lived; the redirect URI "
                "must be the one of the consent): run `criteo-proxy authorize --print-url` again"
            )
        return _CREDENTIALS_HINT

    def build_form(self) -> dict[str, str]:
        return {
            "grant_type": "authorization_code",
            "client_id": self.client_id,
            "client_secret": self.client_secret.reveal(),
            "code": self.code,
            "redirect_uri": self.redirect_uri,
        }

    def secrets(self) -> list[str]:
        return [self.client_secret.reveal(), self.code]

    @property
    def rotates(self) -> bool:
        return True  # the code is spent: the refresh token it gave must be stored

    async def obtain(self, request: TokenRequest) -> Token:
        # Under the store's lock: a server refreshing at this moment must not write its
        # rotation of the old refresh token over the new one.
        async with self.store.lock():
            token = await request(self.build_form())
            await self._store_refresh_token(token)
        return token

    async def _store_refresh_token(self, token: Token) -> None:
        if not token.refresh_token:
            raise TokenError(
                502,
                "token_request_failed",
                "the token endpoint gave no refresh token for the code: is this an "
                "authorization-code app?",
            )
        generation = await asyncio.to_thread(self._next_generation)
        try:
            await asyncio.to_thread(
                self.store.save, self.client_id, token.refresh_token, generation=generation
            )
        except OSError as exc:
            raise TokenError(
                502,
                "token_request_failed",
                f"could not write {self.store.path} ({exc.strerror or exc}): the code is now "
                "spent; fix the path or its permissions, then run `criteo-proxy authorize "
                "--print-url` again",
            ) from exc

    def _next_generation(self) -> int:
        """One above what the store holds for this client, so that the new token wins."""
        try:
            stored = self.store.load()
        except TokenStoreError:
            return 1
        return stored.generation + 1 if stored.client_id == self.client_id else 1


def build_grant(credentials: CredentialsConfig) -> Grant:
    """The grant the server runs with; an unusable token store is a TokenStoreError here."""
    if credentials.grant_type == "authorization_code":
        return RefreshTokenGrant(
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            store=TokenStore(credentials.token_store),
        )
    return ClientCredentialsGrant(
        client_id=credentials.client_id, client_secret=credentials.client_secret
    )


def build_token_provider(
    config: Config,
    session: aiohttp.ClientSession,
    *,
    clock: Clock = time.monotonic,
    on_fetch: Callable[[bool], None] | None = None,
    grant: Grant | None = None,
) -> TokenProvider:
    """The provider for CONFIG; GRANT replaces the configured one (``authorize``)."""
    token_url = config.upstream.effective_token_url
    return TokenProvider(
        session,
        grant or build_grant(config.credentials),
        token_url=token_url,
        margin_seconds=config.tokens.refresh_margin,
        timeout_seconds=config.upstream.response_timeout,
        http_proxy=env_proxy_for(token_url),
        clock=clock,
        on_fetch=on_fetch,
    )
