"""An authorization-code app at run time: refresh, and keep a rotated refresh token.

Losing a refresh token means asking the advertiser to consent again, so a rotated one
is stored before its access token is used, and every rotation of one store holds its
lock and reads it again first (``TokenStore.lock``): another process on this machine
may have rotated or replaced it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from proxy.config.schema import CLIENT_ID_ENV_VAR, CLIENT_SECRET_ENV_VAR, Secret
from proxy.tokens.store import TokenStore, TokenStoreError
from proxy.tokens.token import Token, TokenError, TokenRequest

log = logging.getLogger("criteo_proxy.tokens")

_CREDENTIALS_HINT: Final = f"check {CLIENT_ID_ENV_VAR} / {CLIENT_SECRET_ENV_VAR}"


class RefreshTokenGrant:
    """An authorization-code app at run time: refresh, and keep a rotated refresh token."""

    def __init__(self, *, client_id: str, client_secret: Secret, store: TokenStore) -> None:
        stored = store.load()
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
            try:
                token = await request(self.build_form())
            except TokenError as exc:
                if exc.oauth_error != "invalid_grant" or not await asyncio.to_thread(
                    self._adopt_stored
                ):
                    raise
                token = await request(self.build_form())
            await self._store_rotated(token)
        return token

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
        self._refresh_token = rotated  # kept in memory even if the disk fails
        self.generation += 1
        try:
            await asyncio.to_thread(
                self._store.save, self.client_id, rotated, generation=self.generation
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
