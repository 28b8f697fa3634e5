"""The refresh-token file of an authorization-code app.

Losing the refresh token means asking the advertiser to consent again, so the
file is written atomically (temp file + fsync + rename, never a half-written
file) with mode 0600 inside a 0700 directory, and checked strictly at start.
Every process that rotates it (the server, ``criteo-proxy token`` and ``check``,
``authorize``) holds ``lock()`` from reading it to storing the rotated token, so
that two of them never spend one refresh token. ``generation`` counts rotations,
so that the newer of two copies (this file, the fleet's) can be told (DESIGN 11).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from proxy.config.schema import ConfigError
from proxy.tokens.private_files import write_private_file

_FORMAT_VERSION: Final = 1
_AUTHORIZE_HINT: Final = "run `criteo-proxy authorize` to create it"
_ACCESS_HINT: Final = "run the proxy as the user who ran `criteo-proxy authorize`"


class TokenStoreError(ConfigError):
    """The token store cannot be used: one line naming the file, what is wrong, how to fix it."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing  # the file does not exist (a fleet may have the token)


@dataclass(frozen=True, slots=True)
class StoredGrant:
    client_id: str
    refresh_token: str = field(repr=False)
    saved_at: float
    generation: int = 0  # one more per rotation; files written before it counted are 0


class TokenStore:
    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()

    def load(self) -> StoredGrant:
        """Read and check the file; every problem is a TokenStoreError that says what to do."""
        path = self.path
        try:
            info = path.stat()
        except FileNotFoundError:
            raise TokenStoreError(
                f"credentials.token_store: {path} does not exist; {_AUTHORIZE_HINT}",
                missing=True,
            ) from None
        except OSError as exc:
            raise TokenStoreError(
                f"credentials.token_store: cannot read {path}: {exc.strerror}; {_ACCESS_HINT}"
            ) from exc
        if not stat.S_ISREG(info.st_mode):
            raise TokenStoreError(
                f"credentials.token_store: {path} is not a regular file; remove it or point "
                f"credentials.token_store at a file, then {_AUTHORIZE_HINT}"
            )
        if info.st_mode & 0o077:
            raise TokenStoreError(
                f"credentials.token_store: {path} is readable by others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason, fix = (
                (exc.strerror, _ACCESS_HINT)
                if isinstance(exc, OSError)
                else ("not UTF-8 text", f"{_AUTHORIZE_HINT} again")
            )
            raise TokenStoreError(
                f"credentials.token_store: cannot read {path}: {reason}; {fix}"
            ) from exc
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        refresh_token = data.get("refresh_token") if isinstance(data, dict) else None
        client_id = data.get("client_id") if isinstance(data, dict) else None
        saved_at = data.get("saved_at", 0) if isinstance(data, dict) else 0
        generation = data.get("generation", 0) if isinstance(data, dict) else 0
        if (
            not isinstance(refresh_token, str)
            or not refresh_token
            or not isinstance(client_id, str)
            or isinstance(saved_at, bool)
            or not isinstance(saved_at, int | float)
            or isinstance(generation, bool)
            or not isinstance(generation, int)
            or generation < 0
        ):
            raise TokenStoreError(
                f"credentials.token_store: {path} is corrupt (no refresh token in it); "
                f"{_AUTHORIZE_HINT} again"
            )
        return StoredGrant(
            client_id=client_id,
            refresh_token=refresh_token,
            saved_at=saved_at,
            generation=generation,
        )

    def save(self, client_id: str, refresh_token: str, *, generation: int = 0) -> None:
        """Replace the file atomically; it is never readable by others, not even for an instant."""
        content = json.dumps(
            {
                "version": _FORMAT_VERSION,
                "client_id": client_id,
                "refresh_token": refresh_token,
                "generation": generation,
                "saved_at": time.time(),
            },
            indent=2,
        )
        write_private_file(self.path, content + "\n")

    @property
    def lock_path(self) -> Path:
        # A file of its own: the store itself is replaced by rename, and a lock held on
        # the old file would not keep anyone off the new one.
        return self.path.with_name(self.path.name + ".lock")

    @contextlib.asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Hold the store's exclusive lock, across processes on this machine.

        Waiting happens in a thread (flock blocks); a caller cancelled while it waits
        never holds the lock: the descriptor is closed once the wait ends.
        """
        import fcntl  # here: POSIX only, and only authorization-code apps lock (Windows: WSL2)

        path = self.lock_path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        acquiring = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
        try:
            await asyncio.shield(acquiring)
        except BaseException:
            # Cancelled (or failed) while waiting: let the wait end, then let go.
            acquiring.add_done_callback(lambda _: os.close(fd))
            raise
        try:
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock
