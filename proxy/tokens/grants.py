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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from proxy.config.schema import (
    CLIENT_ID_ENV_VAR,
    CLIENT_SECRET_ENV_VAR,
    Secret,
)
from proxy.coordination.outcomes import Unavailable, Unreadable
from proxy.tokens.store import TokenStore, TokenStoreError
from proxy.tokens.token import Token, TokenError, TokenRequest

if TYPE_CHECKING:  # the fleet's libraries load only with coordination on
    from proxy.coordination.member import Member

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
    fleet: Member | None = None  # with coordination, Redis gets the refresh token too

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
            fleet_generation = await self._fleet_generation()  # before the code is spent
            token = await request(self.build_form())
            await self._store_refresh_token(token, fleet_generation)
        return token

    async def _fleet_generation(self) -> int:
        """The generation Redis holds (0: none); a Redis that cannot be read stops here,
        before the one-time code is spent: the fleet would go on with the old token."""
        fleet = self.fleet
        if fleet is None:
            return 0
        try:
            if not fleet.active:
                raise Unavailable(fleet.link.last_error or "down")
            shared = await fleet.refresh_token.read()
        except (Unavailable, Unreadable) as exc:
            raise TokenError(
                502,
                "token_request_failed",
                f"coordination: Redis {fleet.link.shown_url} cannot be used ({exc}): authorize "
                "writes the refresh token there too; the code was not spent, try again",
            ) from exc
        return 0 if shared is None else shared.generation

    async def _store_refresh_token(self, token: Token, fleet_generation: int) -> None:
        if not token.refresh_token:
            raise TokenError(
                502,
                "token_request_failed",
                "the token endpoint gave no refresh token for the code: is this an "
                "authorization-code app?",
            )
        generation = max(await asyncio.to_thread(self._next_generation), fleet_generation + 1)
        if self.fleet is not None:
            try:
                await self.fleet.refresh_token.put_if_newer(
                    generation=generation, refresh_token=token.refresh_token
                )
            except Unavailable as exc:
                raise TokenError(
                    502,
                    "token_request_failed",
                    f"coordination: Redis {self.fleet.link.shown_url} could not be written "
                    f"({exc}): the code is now spent; run `criteo-proxy authorize --print-url` "
                    "again once Redis answers",
                ) from exc
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
