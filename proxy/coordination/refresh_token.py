"""An authorization-code app's refresh token, shared by the fleet, with its generation.

The generation counts rotations (one more each). A rotated token replaces the one
it came from by compare-and-set on that one's generation: if another member rotated
first, the set fails and the caller takes the fleet's instead. The key never expires:
losing it would mean a new consent. The sealed value is bound to its generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from proxy.coordination.keys import AppKeys
from proxy.coordination.link import Client, Link
from proxy.coordination.outcomes import Unreadable
from proxy.coordination.sealing import Sealer

# ARGV: the generation expected there now (-1: none yet), the new generation, its value.
_COMPARE_AND_SET: Final = """
local current = tonumber(redis.call('HGET', KEYS[1], 'generation') or '-1')
if current ~= tonumber(ARGV[1]) then return current end
redis.call('HSET', KEYS[1], 'generation', ARGV[2], 'ct', ARGV[3])
return -2
"""
# ARGV: a generation and its value, written only if newer than what is there.
_PUT_IF_NEWER: Final = """
local current = tonumber(redis.call('HGET', KEYS[1], 'generation') or '-1')
if current >= tonumber(ARGV[1]) then return current end
redis.call('HSET', KEYS[1], 'generation', ARGV[1], 'ct', ARGV[2])
return -2
"""
_REPLACED: Final = -2


@dataclass(frozen=True, slots=True)
class SharedRefreshToken:
    generation: int
    refresh_token: str = field(repr=False)


class FleetRefreshToken:
    def __init__(self, link: Link, keys: AppKeys, sealer: Sealer) -> None:
        self._link = link
        self._key = keys.refresh_token
        self._sealer = sealer
        self._compare_and_set = link.script(_COMPARE_AND_SET)
        self._put_if_newer = link.script(_PUT_IF_NEWER)

    def _associated(self, generation: int) -> bytes:
        return f"{self._key}\n{generation}".encode()

    async def read(self) -> SharedRefreshToken | None:
        """The fleet's refresh token; Unreadable if no key of ours opens it."""
        key = self._key

        async def read(client: Client) -> list[object]:
            return list(await client.hmget(key, ["generation", "ct"]))

        generation, sealed = await self._link.call("refresh", read)
        if not isinstance(generation, bytes) or not isinstance(sealed, bytes):
            return None
        try:
            number = int(generation)
        except ValueError as exc:
            raise Unreadable("a malformed generation") from exc
        token = self._sealer.open(sealed.decode("ascii", "replace"), self._associated(number))
        return SharedRefreshToken(number, token)

    async def compare_and_set(
        self, *, replaced: int | None, generation: int, refresh_token: str
    ) -> bool:
        """Store GENERATION if the fleet still holds REPLACED (None: nothing yet)."""
        sealed = self._sealer.seal(refresh_token, self._associated(generation))
        args: list[str | int] = [-1 if replaced is None else replaced, generation, sealed]

        async def swap(client: Client) -> object:
            return await self._compare_and_set(keys=[self._key], args=args)

        return int(str(await self._link.call("refresh", swap))) == _REPLACED

    async def put_if_newer(self, *, generation: int, refresh_token: str) -> bool:
        """Bring the fleet up to date with a newer generation (a rejoin, ``authorize``)."""
        sealed = self._sealer.seal(refresh_token, self._associated(generation))
        args: list[str | int] = [generation, sealed]

        async def put(client: Client) -> object:
            return await self._put_if_newer(keys=[self._key], args=args)

        return int(str(await self._link.call("refresh", put))) == _REPLACED
