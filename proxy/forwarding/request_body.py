"""The client's request body: buffered when small enough to replay, streamed otherwise.

Also ``Expect: 100-continue``, answered only once the guards admitted the
request, and the two ways a body fails: too large, or stalled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Final

import aiohttp
from aiohttp import web

from proxy.errors import ProxyError

STREAM_CHUNK_BYTES: Final = 1024 * 1024
# A body of known length up to this size is read (or sent back) in one call.
SMALL_BODY_BYTES: Final = 64 * 1024


class RequestBody:
    """The client's body: buffered when small enough to replay, streamed otherwise."""

    def __init__(
        self,
        content: aiohttp.StreamReader | None,
        prefix: list[bytes],
        *,
        complete: bool,
        max_body_bytes: int | None,
    ) -> None:
        self._content = content
        self._prefix = prefix
        self.replayable = complete
        self._max_body_bytes = max_body_bytes
        self.too_large = False
        self.waiting_for_client = False  # True while a streamed read from the client pends
        self._started = False  # a streamed body's first byte was handed to the upstream leg
        self.size = sum(len(chunk) for chunk in prefix)  # bytes received from the client so far

    @classmethod
    async def read(
        cls,
        request: web.Request,
        *,
        retry_limit_bytes: int,
        max_body_bytes: int | None,
        idle_timeout_seconds: float,
    ) -> RequestBody:
        """Buffer up to RETRY_LIMIT_BYTES; the client may pause IDLE_TIMEOUT_SECONDS at most
        (a small body of known length must arrive whole within it)."""
        if not request.body_exists:
            return NO_BODY
        declared = request.content_length
        if max_body_bytes is not None and declared is not None and declared > max_body_bytes:
            raise body_too_large(max_body_bytes)
        await send_continue_if_expected(request)
        if declared is not None and declared > retry_limit_bytes:
            return cls(request.content, [], complete=False, max_body_bytes=max_body_bytes)
        if declared is not None and declared <= SMALL_BODY_BYTES:
            try:
                async with asyncio.timeout(idle_timeout_seconds):
                    whole = await request.content.readexactly(declared)
            except TimeoutError:
                raise body_timeout(idle_timeout_seconds) from None
            except asyncio.IncompleteReadError as exc:  # the client stopped short: as it sent
                whole = exc.partial
            return cls(None, [whole], complete=True, max_body_bytes=max_body_bytes)
        chunks: list[bytes] = []
        size = 0
        while size <= retry_limit_bytes:
            try:
                async with asyncio.timeout(idle_timeout_seconds):
                    chunk = await request.content.readany()
            except TimeoutError:
                raise body_timeout(idle_timeout_seconds) from None
            if not chunk:
                return cls(None, chunks, complete=True, max_body_bytes=max_body_bytes)
            chunks.append(chunk)
            size += len(chunk)
            if max_body_bytes is not None and size > max_body_bytes:
                raise body_too_large(max_body_bytes)
        return cls(request.content, chunks, complete=False, max_body_bytes=max_body_bytes)

    def payload(
        self, on_progress: Callable[[], None] | None
    ) -> bytes | AsyncIterator[bytes] | None:
        """What to send upstream; for a streamed body, ON_PROGRESS is called per chunk
        handed over, and at the end (a buffered one goes in one piece: it has none)."""
        if self.replayable:
            # None, not b"": aiohttp would add "Content-Length: 0" to a bodiless GET.
            return b"".join(self._prefix) if self._prefix else None
        if self._started:
            raise RuntimeError("a streamed body can be sent only once")
        return self._stream(on_progress or _no_progress)

    @property
    def whole(self) -> bytes | None:
        """The body's bytes when it was buffered whole; None when it streams."""
        return b"".join(self._prefix) if self.replayable else None

    @property
    def can_resend(self) -> bool:
        """Buffered, or streamed but not a byte of it sent yet (the connection failed)."""
        return self.replayable or not self._started

    async def _stream(self, on_progress: Callable[[], None]) -> AsyncIterator[bytes]:
        self._started = True
        for chunk in self._prefix:
            yield chunk
        self._prefix = []
        if self._content is not None:
            while True:
                # A stall here (the client's) and one upstream look alike to the
                # deadline that cuts them; this flag tells them apart.
                self.waiting_for_client = True
                chunk = await self._content.read(STREAM_CHUNK_BYTES)
                self.waiting_for_client = False
                if not chunk:
                    break
                self.size += len(chunk)
                if self._max_body_bytes is not None and self.size > self._max_body_bytes:
                    self.too_large = True
                    raise body_too_large(self._max_body_bytes)
                on_progress()
                yield chunk
        on_progress()


def _no_progress() -> None:
    pass


# Every bodiless request (most GETs): nothing about it ever changes.
NO_BODY: Final = RequestBody(None, [], complete=True, max_body_bytes=None)


async def send_continue_if_expected(request: web.Request) -> None:
    """Answer ``Expect`` now that the request has been admitted: 100 Continue, or 417."""
    expect = request.headers.get("Expect")
    if expect is None or request.version < aiohttp.HttpVersion11:
        return
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(
            reason="criteo-proxy accepts only Expect: 100-continue",
            text=f"Unknown Expect: {expect[:100]}",
        )
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0


def body_timeout(idle_seconds: float) -> ProxyError:
    return ProxyError(
        408,
        "body_timeout",
        f"the request body stalled: nothing came for upstream.response_timeout "
        f"({idle_seconds:g} s)",
    )


def body_too_large(limit: int) -> ProxyError:
    return ProxyError(
        413,
        "body_too_large",
        f"the request body is larger than limits.max_body_bytes ({limit} bytes)",
    )
