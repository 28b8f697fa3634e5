"""The fleet's single flight (DESIGN 11): a member without a valid token takes the one
another member fetched, from Redis; when there is none, one member fetches it for
everybody under the app's lock while the others wait for it to appear.

The lock's lease bounds the wait: past it (its holder died), the next member takes the
lock over. A fetch that fails is not shared: each waiting member then takes its turn
under its own back-off. Redis failing at any point means acting alone (``Unavailable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from proxy.coordination.outcomes import Unavailable, Unreadable
from proxy.tokens.token import Clock, Token

if TYPE_CHECKING:  # the fleet's libraries load only with coordination on
    from proxy.coordination.access_token import SharedToken
    from proxy.coordination.member import Member

log = logging.getLogger("criteo_proxy.tokens")

_POLL_FIRST_SECONDS: Final = 0.025
_POLL_MAX_SECONDS: Final = 0.25


class FleetTokens:
    def __init__(
        self,
        member: Member,
        *,
        lease_seconds: float,
        margin_seconds: float,
        clock: Clock,
    ) -> None:
        self.member = member
        self._lease_seconds = lease_seconds
        self._margin_seconds = margin_seconds
        self._clock = clock

    @property
    def active(self) -> bool:
        return self.member.active

    async def obtain(self, fetch: Callable[[], Awaitable[Token]], *, stale: str | None) -> Token:
        """The fleet's valid token, or FETCH's under the app's lock, shared once fetched.

        STALE: an access token that met a 401 here; dropped from Redis first, if it is
        still the fleet's, and never taken from there.
        """
        shared = self.member.access_token
        if stale is not None:
            await shared.drop_if_current(stale)
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + 2 * self._lease_seconds
        delay = _POLL_FIRST_SECONDS
        while True:
            token = await self._read(stale)
            if token is not None:
                return token
            if await shared.try_lock(self._lease_seconds):
                try:
                    token = await self._read(stale)
                    if token is not None:
                        return token
                    token = await fetch()
                    await self._publish(token)
                    return token
                finally:
                    with contextlib.suppress(Unavailable):
                        await shared.unlock()
            if loop.time() >= give_up_at:  # a lock no lease explains: do not wait for ever
                raise Unavailable("the fleet's token lock is never freed")
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_SECONDS)

    async def _read(self, stale: str | None) -> Token | None:
        try:
            found = await self.member.access_token.read()
        except Unreadable:
            self.member.disagree()
            raise Unavailable("members disagree on the encryption key") from None
        if found is None or found.access_token == stale:
            return None
        token = self._as_local(found)
        return token if self._clock() < token.renew_at else None

    def _as_local(self, shared: SharedToken) -> Token:
        """The fleet's token on this member's clock (Redis's says how long it has left)."""
        now = self._clock()
        lifetime = shared.lifetime_seconds
        obtained_at = now - (lifetime - shared.remaining_seconds)
        margin = min(self._margin_seconds, lifetime / 2)
        return Token(
            access_token=shared.access_token,
            expires_in_seconds=lifetime,
            obtained_at=obtained_at,
            renew_at=obtained_at + lifetime - margin,
        )

    async def _publish(self, token: Token) -> None:
        remaining = token.expires_at - self._clock()
        if remaining <= 0:
            return
        # Ours is good either way; while Redis is away, the others fetch their own.
        with contextlib.suppress(Unavailable):
            await self.member.access_token.write(
                token.access_token,
                remaining_seconds=remaining,
                lifetime_seconds=token.expires_in_seconds,
            )
