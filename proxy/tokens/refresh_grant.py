"""An authorization-code app at run time: refresh, and keep a rotated refresh token.

Losing a refresh token means asking the advertiser to consent again, so a rotated one
is stored before its access token is used, and every rotation of one store holds its
lock and reads it again first (``TokenStore.lock``): another process on this machine
may have rotated or replaced it. In a fleet (DESIGN 11) Redis holds the token too,
with its generation: the higher generation wins, a rotation is written to Redis by
compare-and-set on the generation it replaced, then to the file, and a member that
rotated while Redis was away writes its newer generation back when Redis returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Final

from proxy.config.schema import CLIENT_ID_ENV_VAR, CLIENT_SECRET_ENV_VAR, Secret
from proxy.coordination.outcomes import Unavailable, Unreadable
from proxy.tokens.store import StoredGrant, TokenStore, TokenStoreError
from proxy.tokens.token import Token, TokenError, TokenRequest

if TYPE_CHECKING:  # the fleet's libraries load only with coordination on
    from proxy.coordination.member import Member
    from proxy.coordination.refresh_token import SharedRefreshToken

log = logging.getLogger("criteo_proxy.tokens")

_CREDENTIALS_HINT: Final = f"check {CLIENT_ID_ENV_VAR} / {CLIENT_SECRET_ENV_VAR}"


class RefreshTokenGrant:
    """An authorization-code app at run time: refresh, and keep a rotated refresh token."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: Secret,
        store: TokenStore,
        stored: StoredGrant | None = None,
        fleet: Member | None = None,
    ) -> None:
        stored = stored or store.load()
        if stored.client_id != client_id:
            raise TokenStoreError(
                f"credentials.token_store: {store.path} holds a refresh token of another "
                f"client id ({stored.client_id}); run `criteo-proxy authorize` for this one"
            )
        self.client_id = client_id
        self._client_secret = client_secret
        self._store = store
        self._refresh_token = stored.refresh_token
        self.generation = stored.generation
        self.store_path = str(store.path)
        # Epoch seconds the refresh token was last written (authorize, or a rotation).
        self.stored_at: float | None = stored.saved_at or None
        self._fleet = fleet
        self._fleet_generation: int | None = None  # Redis's, as last read under the lock
        if fleet is not None:
            fleet.link.on_rejoin(self.sync_with_fleet)

    @property
    def cache_key(self) -> str:
        return f"refresh_token:{self.client_id}"

    def rejection_hint(self, oauth_error: str) -> str:
        if oauth_error == "invalid_grant":
            return (
                f"the refresh token in {self._store.path} is no longer valid: run "
                "`criteo-proxy authorize` again (the file is left as it was)"
            )
        return _CREDENTIALS_HINT

    def build_form(self) -> dict[str, str]:
        return {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": self._client_secret.reveal(),
            "refresh_token": self._refresh_token,
        }

    def secrets(self) -> list[str]:
        return [self._client_secret.reveal(), self._refresh_token]

    @property
    def rotates(self) -> bool:
        return True

    async def obtain(self, request: TokenRequest) -> Token:
        """Refresh under the store's lock, with the refresh token the store holds now.

        Another process on this machine (``criteo-proxy token`` or ``check``, a second
        server, ``authorize``) may have rotated or replaced it since we read it: the
        lock keeps two of them from spending one token, the re-read from sending a
        spent one. A refusal (invalid_grant) is believed only once the store, read
        again, holds nothing newer.
        """
        async with self._store.lock():
            await asyncio.to_thread(self._adopt_stored)
            await self._adopt_fleets()
            try:
                token = await request(self.build_form())
            except TokenError as exc:
                if exc.oauth_error != "invalid_grant":
                    raise
                # The fleet first: a member elsewhere may have rotated it.
                if not await self._adopt_fleets() and not await asyncio.to_thread(
                    self._adopt_stored
                ):
                    raise
                token = await request(self.build_form())
            await self._store_rotated(token)
        return token

    async def sync_with_fleet(self) -> None:
        """At start and on each rejoin: the higher generation wins (a tie: Redis's), and
        the other copy is brought up to date."""
        async with self._store.lock():
            await asyncio.to_thread(self._adopt_stored)
            if await self._adopt_fleets():
                return
            shared = self._fleet_generation
            if shared is None or self.generation > shared:
                await self._put_newer()

    async def _fleet_read(self) -> SharedRefreshToken | None:
        fleet = self._fleet
        if fleet is None or not fleet.active:
            return None
        try:
            shared = await fleet.refresh_token.read()
        except Unreadable:
            fleet.disagree()
            return None
        except Unavailable:
            return None
        self._fleet_generation = None if shared is None else shared.generation
        return shared

    async def _adopt_fleets(self) -> bool:
        """Take Redis's refresh token (and write it to the file) if it is newer than ours,
        or as new and not ours; True if ours changed."""
        shared = await self._fleet_read()
        if (
            shared is None
            or shared.generation < self.generation
            or shared.refresh_token == self._refresh_token
        ):
            return False
        log.info(
            "took the fleet's refresh token (generation %d, ours was %d)",
            shared.generation,
            self.generation,
        )
        self._refresh_token = shared.refresh_token
        self.generation = shared.generation
        await self._save(shared.refresh_token)
        return True

    async def _put_newer(self) -> None:
        fleet = self._fleet
        if fleet is None or not fleet.active:
            return
        try:
            written = await fleet.refresh_token.put_if_newer(
                generation=self.generation, refresh_token=self._refresh_token
            )
        except Unavailable:
            return
        if written:
            self._fleet_generation = self.generation
            log.info("gave the fleet our newer refresh token (generation %d)", self.generation)

    def _adopt_stored(self) -> bool:
        """Take the store's refresh token if it is not ours any more; True if it changed."""
        try:
            stored = self._store.load()
        except TokenStoreError as exc:
            log.warning("could not read the token store again: %s", exc)
            return False
        if stored.client_id != self.client_id or stored.refresh_token == self._refresh_token:
            return False
        log.info(
            "the refresh token in %s was replaced by another process (generation %d): using it",
            self._store.path,
            stored.generation,
        )
        self._refresh_token = stored.refresh_token
        self.generation = stored.generation
        self.stored_at = stored.saved_at or None
        return True

    async def _store_rotated(self, token: Token) -> None:
        """Store a rotated refresh token before its access token is used."""
        rotated = token.refresh_token
        if not rotated or rotated == self._refresh_token:
            return
        replaced = self.generation
        self._refresh_token = rotated  # kept in memory even if the disk fails
        self.generation = replaced + 1
        if not await self._swap_in_fleet(replaced, rotated):
            return
        await self._save(rotated)

    async def _swap_in_fleet(self, replaced: int, rotated: str) -> bool:
        """Redis first, by compare-and-set on the generation replaced; False when another
        member rotated first (its token, in Redis, is then ours too)."""
        fleet = self._fleet
        if fleet is None or not fleet.active:
            return True  # alone: sync_with_fleet writes it back on rejoin
        try:
            swapped = await fleet.refresh_token.compare_and_set(
                replaced=self._fleet_generation,  # what Redis held when read under the lock
                generation=self.generation,
                refresh_token=rotated,
            )
        except Unavailable:
            return True
        if swapped:
            self._fleet_generation = self.generation
            return True
        log.warning(
            "another member rotated the refresh token first (compare-and-set on generation "
            "%s failed): taking the fleet's",
            self._fleet_generation,
        )
        shared = await self._fleet_read()
        if shared is None:
            return True  # Redis went away meanwhile: keep ours
        self._refresh_token = shared.refresh_token
        self.generation = shared.generation
        await self._save(shared.refresh_token)
        return False

    async def _save(self, refresh_token: str) -> None:
        try:
            await asyncio.to_thread(
                self._store.save, self.client_id, refresh_token, generation=self.generation
            )
        except OSError as exc:
            log.error(
                "could not store the rotated refresh token in %s (%s): this process keeps "
                "working, but after a restart `criteo-proxy authorize` must be run again",
                self._store.path,
                exc.strerror or exc,
            )
        else:
            self.stored_at = time.time()
            log.info("stored the rotated refresh token in %s", self._store.path)
