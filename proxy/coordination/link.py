"""One member's connection to Redis, and its health.

Every call is bounded by ``coordination.timeout``; one that fails (down, slow, refused
credentials) marks Redis down: the member acts alone from then on, says so once at
WARNING, and tries again in the background (1 s doubling to 30 s) until Redis answers,
when it says so at INFO and runs its rejoin hooks. No request ever waits for a Redis
that is down: while down, ``call`` refuses at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from proxy.config.addresses import shown_redis_url
from proxy.coordination.outcomes import Unavailable

log = logging.getLogger("criteo_proxy.coordination")

_RECONNECT_FIRST_SECONDS: Final = 1.0
_RECONNECT_MAX_SECONDS: Final = 30.0

LinkState = Literal["up", "down"]
Operation = Literal["connect", "token", "refresh", "window", "announce"]
T = TypeVar("T")
Client = redis_asyncio.Redis


class Link:
    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float,
        ca_file: str | None = None,
        on_error: Callable[[Operation], None] = lambda operation: None,
        on_state: Callable[[bool], None] = lambda up: None,
    ) -> None:
        self._client = _connect(url, timeout_seconds=timeout_seconds, ca_file=ca_file)
        self._password = _password_of(url)
        self.shown_url = shown_redis_url(url)
        self._timeout_seconds = timeout_seconds
        self._on_error = on_error
        self._on_state = on_state
        self.state: LinkState = "down"
        self.last_error: str | None = "not connected yet"
        self._reconnecting: asyncio.Task[None] | None = None
        self._rejoin_hooks: list[Callable[[], Awaitable[None]]] = []
        self._closed = False

    @property
    def is_up(self) -> bool:
        return self.state == "up"

    def on_rejoin(self, hook: Callable[[], Awaitable[None]]) -> None:
        """HOOK runs each time Redis answers after not answering (the first time included)."""
        self._rejoin_hooks.append(hook)

    def script(self, source: str) -> AsyncScript:
        """A Lua script run server-side, atomically (EVALSHA, loaded on first use)."""
        return self._client.register_script(source)

    async def start(self) -> None:
        """Connect once; unreachable is no error: the member starts alone and keeps trying."""
        if await self._ping():
            await self._joined(first=True)
        else:
            log.warning(
                "coordination: Redis %s unreachable (%s): acting alone",
                self.shown_url,
                self.last_error,
            )
            self._reconnect_in_background()

    async def call(self, operation: Operation, action: Callable[[Client], Awaitable[T]]) -> T:
        """ACTION against Redis, or Unavailable at once while Redis is down."""
        if self.state != "up":
            raise Unavailable(self.last_error or "down")
        try:
            async with asyncio.timeout(self._timeout_seconds):
                return await action(self._client)
        except (RedisError, OSError, TimeoutError) as exc:
            self.fail(operation, exc)
            raise Unavailable(self.last_error or "down") from exc

    def fail(self, operation: Operation, exc: BaseException) -> None:
        """Count a failed call; the first of an outage says so and starts reconnecting."""
        self._on_error(operation)
        self.last_error = self._describe(exc)
        if self.state == "up" and not self._closed:  # not for a call cut by our own close
            self.state = "down"
            self._on_state(False)
            log.warning(
                "coordination: Redis %s unreachable (%s): acting alone",
                self.shown_url,
                self.last_error,
            )
            self._reconnect_in_background()

    async def aclose(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        await self._client.aclose()

    async def _ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_seconds):
                await self._client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            self._on_error("connect")
            self.last_error = self._describe(exc)
            return False
        return True

    async def _joined(self, *, first: bool) -> None:
        self.state = "up"
        self.last_error = None
        self._on_state(True)
        if first:
            log.info("coordination: Redis %s answers: sharing with the fleet", self.shown_url)
        else:
            log.info("coordination: Redis %s answers again: rejoined the fleet", self.shown_url)
        for hook in self._rejoin_hooks:
            try:
                await hook()
            except Unavailable:
                return  # Redis went away again: the next rejoin runs them all

    def _reconnect_in_background(self) -> None:
        if self._closed or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = _RECONNECT_FIRST_SECONDS
        while True:
            await asyncio.sleep(delay)
            if await self._ping():
                await self._joined(first=False)
                return
            delay = min(delay * 2, _RECONNECT_MAX_SECONDS)

    def _describe(self, exc: BaseException) -> str:
        """One line about a failure, never the password (the URL's, or one echoed back)."""
        if isinstance(exc, TimeoutError):
            text = f"no answer within {self._timeout_seconds:g} s (coordination.timeout)"
        else:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return " ".join(text.split()).rstrip(".")[:300]


def _connect(url: str, *, timeout_seconds: float, ca_file: str | None) -> Client:
    # Over TLS, certificates and host names always verified; ca_file adds to the system's CAs.
    tls: dict[str, Any] = (
        {"ssl_ca_certs": ca_file, "ssl_check_hostname": True} if url.startswith("rediss://") else {}
    )
    return redis_asyncio.Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),  # a failed call is ours to handle: no silent replay
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        health_check_interval=0,
        **tls,
    )


def _password_of(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def is_loopback_redis(url: str) -> bool:
    """Whether URL stays on this machine (a Unix socket, or a loopback host)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)
