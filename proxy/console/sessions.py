"""The console's browser sessions, for when inbound keys are set."""

from __future__ import annotations

import collections
import hashlib
import secrets
from typing import Final, Protocol

_MAX_CONSOLE_SESSIONS: Final = 64


class ConsoleSessions:
    """Browser sessions of the console, for when inbound keys are set.

    A browser cannot send X-Proxy-Key on a page load: it brings the key once,
    ``/_proxy/?key=...``, and gets an HttpOnly, SameSite=Strict cookie of ours
    for the console's paths (a random session id, never the key). Memory only:
    a restart logs everyone out.
    """

    def __init__(self, cookie_name: str) -> None:
        self.cookie_name = cookie_name
        self._open: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def open(self) -> str:
        session = secrets.token_urlsafe(32)
        self._open[_digest(session)] = None
        while len(self._open) > _MAX_CONSOLE_SESSIONS:
            self._open.popitem(last=False)
        return session

    def is_open(self, session: str | None) -> bool:
        # A digest as the dict key: looking it up tells nothing about a valid id's bytes.
        return bool(session) and _digest(session or "") in self._open


def _digest(session: str) -> bytes:
    return hashlib.sha256(session.encode()).digest()


class ConsoleAccess(Protocol):
    """What the console's page needs of the server's guard policy, to exchange a
    ``?key=`` for a session (the server hands its policy in)."""

    @property
    def api_keys(self) -> tuple[bytes, ...]: ...

    @property
    def console_sessions(self) -> ConsoleSessions: ...

    def has_valid_proxy_key(self, offered: str | None) -> bool: ...
