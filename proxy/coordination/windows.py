"""The app's rate-limit windows, shared by the fleet: Criteo's latest word per bucket and
the fleet's sends since, taken atomically by one script per send (DESIGN 11).

The word kept is the answer with the latest reset, and of those the lowest remaining.
Sends still unanswered may not be counted in it (answers overtake each other, at Criteo
and on the way back), so each answer's word is taken with the fleet's sends of that
window then in flight counted against it, as a lone proxy counts its own
(``ratelimit.quota``). Sends in flight are a sorted set (send number, granted at): a
window counts those granted since it began (sends granted before its start reached
Criteo in the window before), and those of a member that died are forgotten after
``upstream.response_timeout``. Before any word, one send goes as a
probe and the others wait for its answer; a window whose reset has passed is full
again, less what is still in flight, until an answer names the next. Times are Redis's
(``TIME``); a reset more than a minute away, from Criteo or from Redis, is not trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from proxy.coordination.keys import AppKeys
from proxy.coordination.link import Client, Link

RESET_MARGIN_SECONDS: Final = 0.1  # released this long after a reset, as a lone proxy is
PROBE_WAIT_SECONDS: Final = 1.0  # how long the others wait for a probe's answer
MAX_RESET_AHEAD_SECONDS: Final = 60.0
_KEEP_SECONDS: Final = 180  # a window's keys outlive its reset by this much

# KEYS: the window, its sends in flight. ARGV: reset margin, probe wait, max reset
# ahead, keep seconds, how long a send stays in flight at most.
# Returns {granted, why, wait, limit, left, reset_in, send}; floats as strings (Redis
# truncates Lua numbers), '' for none.
_TAKE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[5]))
local h = redis.call('HMGET', KEYS[1], 'limit', 'remaining', 'reset', 'sent', 'probe_until')
local limit, remaining, reset = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
local sent, probe_until = tonumber(h[4]) or 0, tonumber(h[5]) or 0
local margin = tonumber(ARGV[1])
local keep = tonumber(ARGV[4])
if reset ~= nil and reset > now + tonumber(ARGV[3]) then limit, reset = nil, nil end
local function grant()
  local send = redis.call('HINCRBY', KEYS[1], 'sends', 1)
  redis.call('ZADD', KEYS[2], now, send)
  redis.call('EXPIRE', KEYS[1], keep)
  redis.call('EXPIRE', KEYS[2], keep)
  return send
end
if limit == nil then
  if now < probe_until then
    return {0, 'probe', '', '', '', '', ''}
  end
  redis.call('HSET', KEYS[1], 'probe_until', tostring(now + tonumber(ARGV[2])))
  return {1, 'probe', '0', '', '', '', grant()}
end
if reset ~= nil and now >= reset + margin then
  -- A new window: the sends still in flight from before its start were counted in the
  -- old one (they reached Criteo before the reset); those granted since count here.
  sent = redis.call('ZCOUNT', KEYS[2], reset, '+inf')
  redis.call('HSET', KEYS[1], 'remaining', limit, 'sent', sent, 'window_start', reset)
  redis.call('HDEL', KEYS[1], 'reset')
  remaining, reset = limit, nil
end
local left = remaining - sent
local reset_in = ''
if reset ~= nil then reset_in = tostring(reset - now) end
if left > 0 then
  redis.call('HINCRBY', KEYS[1], 'sent', 1)
  return {1, 'ok', '0', limit, left - 1, reset_in, grant()}
end
if reset ~= nil then
  return {0, 'spent', tostring(reset + margin - now), limit, 0, reset_in, ''}
end
return {0, 'answer', '', limit, 0, '', ''}
"""
# KEYS: the window, its sends in flight. ARGV: the send answered, then (for a word)
# limit, remaining, reset (Criteo's epoch seconds), margin, max ahead, keep seconds.
_ANSWER: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], 'probe_until')
-- Whatever this answer says, its send is no longer in flight: an answer that is not the
-- lowest word was counted in that word already (Criteo counts in order), and a failure
-- or an unmetered answer holds no call of the window either.
local function recount()
  local start = redis.call('HGET', KEYS[1], 'window_start') or '-inf'
  if redis.call('HEXISTS', KEYS[1], 'sent') == 1 then
    redis.call('HSET', KEYS[1], 'sent', redis.call('ZCOUNT', KEYS[2], start, '+inf'))
  end
end
if ARGV[2] == nil then
  recount()
  return 0
end
local limit, remaining, reset = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local margin, ahead = tonumber(ARGV[5]), tonumber(ARGV[6])
if reset > now + ahead or reset + margin <= now then
  recount()
  return 0
end
local h = redis.call('HMGET', KEYS[1], 'remaining', 'reset', 'window_start')
local known_remaining, known_reset = tonumber(h[1]), tonumber(h[2])
local window_start = h[3] or '-inf'
if known_reset ~= nil and known_reset > now + ahead then known_reset = nil end
if known_reset == nil or reset > known_reset
    or (reset == known_reset and remaining < known_remaining) then
  if known_reset ~= nil and reset > known_reset then
    window_start = tostring(known_reset)  -- a newer window: it began at the old reset
  end
  -- Sends of this window still unanswered may not be counted in this word yet.
  redis.call('HSET', KEYS[1], 'limit', limit, 'remaining', remaining,
    'reset', tostring(reset), 'window_start', window_start,
    'sent', redis.call('ZCOUNT', KEYS[2], window_start, '+inf'))
  local keep = math.ceil(reset - now) + tonumber(ARGV[7])
  redis.call('EXPIRE', KEYS[1], keep)
  redis.call('EXPIRE', KEYS[2], keep)
  return 1
end
recount()
return 0
"""

Why = Literal["ok", "probe", "spent", "answer"]


@dataclass(frozen=True, slots=True)
class FleetSlot:
    """The fleet's verdict on one send, and the window as it stood."""

    granted: bool
    why: Why  # ok / probe: granted; probe: a probe is out; spent; answer: spent, reset unknown
    wait_seconds: float | None  # spent: until the reset frees a slot; else None
    send: int | None  # the send's number, for its answer
    limit: int | None
    left: int | None
    reset_in_seconds: float | None


class FleetWindows:
    def __init__(self, link: Link, keys: AppKeys, *, in_flight_seconds: float) -> None:
        self._link = link
        self._keys = keys
        self._in_flight_seconds = in_flight_seconds  # a send unanswered longer is forgotten
        self._take = link.script(_TAKE)
        self._answer = link.script(_ANSWER)

    async def take(self, bucket: str) -> FleetSlot:
        keys = self._window_keys(bucket)
        args = [
            RESET_MARGIN_SECONDS,
            PROBE_WAIT_SECONDS,
            MAX_RESET_AHEAD_SECONDS,
            _KEEP_SECONDS,
            self._in_flight_seconds,
        ]

        async def take(client: Client) -> list[object]:
            return list(await self._take(keys=keys, args=args))

        granted, why, wait, limit, left, reset_in, send = [
            _text(v) for v in await self._link.call("window", take)
        ]
        verdict: Why = why if why in ("probe", "spent", "answer") else "ok"  # type: ignore[assignment]
        return FleetSlot(
            granted=granted == "1",
            why=verdict,
            # Only a spent window with a known reset says how long; a probe out, or a
            # spent window whose reset is unknown, waits for an answer.
            wait_seconds=float(wait) if verdict == "spent" else None,
            send=int(send) if send else None,
            limit=int(limit) if limit else None,
            left=int(left) if left else None,
            reset_in_seconds=float(reset_in) if reset_in else None,
        )

    def _window_keys(self, bucket: str) -> list[str]:
        window = self._keys.window(bucket)
        return [window, window + ":in-flight"]

    async def answered(
        self,
        bucket: str,
        *,
        send: int,
        limit: int | None = None,
        remaining: int | None = None,
        reset_at: float | None = None,
    ) -> None:
        """Send SEND is answered; with Criteo's word on the window if the answer had one.
        A failure, or a send that never went (its client left), is answered without."""
        keys = self._window_keys(bucket)
        args: list[int | float] = [send]
        if limit is not None and remaining is not None and reset_at is not None:
            args += [
                limit,
                remaining,
                reset_at,
                RESET_MARGIN_SECONDS,
                MAX_RESET_AHEAD_SECONDS,
                _KEEP_SECONDS,
            ]

        async def answer(client: Client) -> object:
            return await self._answer(keys=keys, args=args)

        await self._link.call("window", answer)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
