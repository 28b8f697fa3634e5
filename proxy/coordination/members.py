"""Who is there: each member announces itself every 5 s; ``members`` counts those heard
from in the last 15 s (this one included), on Redis's clock. The count is read again
every second, so that a member that joins or falls silent shows within a second, not
at this member's next announcement."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

from proxy.coordination.keys import AppKeys
from proxy.coordination.link import Client, Link
from proxy.coordination.outcomes import Unavailable

ANNOUNCE_EVERY_SECONDS: Final = 5.0
HEARD_WITHIN_SECONDS: Final = 15.0
RECOUNT_EVERY_SECONDS: Final = 1.0

_ANNOUNCE: Final = """
local now = redis.call('TIME')
local seconds = tonumber(now[1]) + tonumber(now[2]) / 1e6
redis.call('ZADD', KEYS[1], seconds, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', seconds - tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 4))
return redis.call('ZCARD', KEYS[1])
"""

_COUNT: Final = """
local now = redis.call('TIME')
local seconds = tonumber(now[1]) + tonumber(now[2]) / 1e6
return redis.call('ZCOUNT', KEYS[1], string.format('(%.6f', seconds - tonumber(ARGV[1])), '+inf')
"""


class Members:
    def __init__(self, link: Link, keys: AppKeys, *, member_id: str) -> None:
        self._link = link
        self._key = keys.members
        self._member_id = member_id
        self._announce = link.script(_ANNOUNCE)
        self._count = link.script(_COUNT)
        self.count: int | None = None  # as of the last announcement or recount Redis answered
        self._task: asyncio.Task[None] | None = None

    async def announce(self) -> None:
        async def announce(client: Client) -> object:
            return await self._announce(
                keys=[self._key], args=[self._member_id, HEARD_WITHIN_SECONDS]
            )

        await self._take_count(announce)

    async def recount(self) -> None:
        """Those heard from in the last 15 s, without announcing this one."""

        async def count(client: Client) -> object:
            return await self._count(keys=[self._key], args=[HEARD_WITHIN_SECONDS])

        await self._take_count(count)

    async def _take_count(self, script: Callable[[Client], Awaitable[object]]) -> None:
        try:
            self.count = int(str(await self._link.call("announce", script)))
        except Unavailable:
            self.count = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._announce_forever())

    async def _announce_forever(self) -> None:
        loop = asyncio.get_running_loop()
        ticks_per_announcement = round(ANNOUNCE_EVERY_SECONDS / RECOUNT_EVERY_SECONDS)
        tick, next_tick = 0, loop.time()
        while True:
            if self._link.is_up:
                await (self.announce() if tick % ticks_per_announcement == 0 else self.recount())
            tick += 1
            next_tick += RECOUNT_EVERY_SECONDS  # a slow Redis does not stretch the 5 s
            await asyncio.sleep(max(0.0, next_tick - loop.time()))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
