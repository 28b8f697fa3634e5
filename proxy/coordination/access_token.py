"""The app's access token, shared by the fleet, and the lock of the one member that
fetches (or refreshes) it for everybody.

Kept as a hash: the sealed token, a fingerprint (to tell which token met a 401, without
the token), its expiry on Redis's clock and its lifetime; the key expires with the
token. The lock holds its owner's id and expires after its lease; only its owner
deletes it (compare-and-delete), so a member that outlived its lease cannot free a lock
another member took over.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

from proxy.coordination.keys import AppKeys
from proxy.coordination.link import Client, Link
from proxy.coordination.outcomes import Unreadable
from proxy.coordination.sealing import Sealer

_READ: Final = """
local found = redis.call('HMGET', KEYS[1], 'ct', 'expires_at', 'lifetime')
local now = redis.call('TIME')
return {found[1], found[2], found[3], now[1], now[2]}
"""
_WRITE: Final = """
local now = redis.call('TIME')
local remaining = tonumber(ARGV[3])
local expires_at = tonumber(now[1]) + tonumber(now[2]) / 1e6 + remaining
redis.call('HSET', KEYS[1], 'ct', ARGV[1], 'fp', ARGV[2], 'expires_at', tostring(expires_at),
  'lifetime', ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.max(1, math.floor(remaining * 1000)))
return 1
"""
_DROP_IF: Final = """
if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_UNLOCK: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def fingerprint(access_token: str) -> str:
    return hashlib.sha256(access_token.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class SharedToken:
    access_token: str = field(repr=False)
    remaining_seconds: float  # until it expires, on Redis's clock
    lifetime_seconds: float  # the expires_in Criteo gave


class SharedAccessToken:
    def __init__(self, link: Link, keys: AppKeys, sealer: Sealer, *, owner: str) -> None:
        self._link = link
        self._keys = keys
        self._sealer = sealer
        self._owner = owner  # this member's id, in the lock it holds
        self._read = link.script(_READ)
        self._write = link.script(_WRITE)
        self._drop_if = link.script(_DROP_IF)
        self._unlock = link.script(_UNLOCK)

    async def read(self) -> SharedToken | None:
        """The fleet's token while it has time left; Unreadable if no key of ours opens it."""
        key = self._keys.access_token

        async def read(client: Client) -> list[object]:
            return list(await self._read(keys=[key]))

        sealed, expires_at, lifetime, seconds, micros = await self._link.call("token", read)
        if not isinstance(sealed, bytes) or expires_at is None or lifetime is None:
            return None
        try:
            now = int(_text(seconds)) + int(_text(micros)) / 1e6
            remaining = float(_text(expires_at)) - now
            lifetime_seconds = float(_text(lifetime))
        except ValueError as exc:
            raise Unreadable("a malformed token entry") from exc
        if remaining <= 0:
            return None
        token = self._sealer.open(sealed.decode("ascii", "replace"), key.encode())
        return SharedToken(token, remaining, lifetime_seconds)

    async def write(
        self, access_token: str, *, remaining_seconds: float, lifetime_seconds: float
    ) -> None:
        key = self._keys.access_token
        sealed = self._sealer.seal(access_token, key.encode())
        args: list[str | float] = [
            sealed,
            fingerprint(access_token),
            remaining_seconds,
            lifetime_seconds,
        ]

        async def write(client: Client) -> object:
            return await self._write(keys=[key], args=args)

        await self._link.call("token", write)

    async def drop_if_current(self, access_token: str) -> None:
        """After a 401: forget the fleet's token only if it is still the one that met it."""
        key = self._keys.access_token

        async def drop(client: Client) -> object:
            return await self._drop_if(keys=[key], args=[fingerprint(access_token)])

        await self._link.call("token", drop)

    async def try_lock(self, lease_seconds: float) -> bool:
        key, owner, lease_ms = self._keys.token_lock, self._owner, int(lease_seconds * 1000)

        async def lock(client: Client) -> object:
            return await client.set(key, owner, nx=True, px=max(1, lease_ms))

        return bool(await self._link.call("token", lock))

    async def unlock(self) -> None:
        key = self._keys.token_lock

        async def unlock(client: Client) -> object:
            return await self._unlock(keys=[key], args=[self._owner])

        await self._link.call("token", unlock)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
