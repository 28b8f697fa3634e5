"""The access token ``criteo-proxy token`` prints, kept for the next call.

``curl -H "Authorization: Bearer $(criteo-proxy token)"`` in a loop would
otherwise cost a token request (and Criteo's patience) per call; like oauth2l
and gcloud, the command reuses a token while it has more than
``tokens.refresh_margin`` left. The file is ``token-<profile>.json`` under
``$XDG_CACHE_HOME/criteo-proxy`` (default ``~/.cache/criteo-proxy``), never in
the config directory, mode 0600 in a 0700 directory, replaced atomically. It is
keyed by client id and token URL; a corrupt, foreign or too-open file is
ignored and replaced, never an error.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from proxy.tokens.private_files import write_private_file

log = logging.getLogger("criteo_proxy.token_cache")

_FORMAT_VERSION: Final = 1


def default_cache_path(profile: str, environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "criteo-proxy" / f"token-{profile}.json"


class TokenCache:
    def __init__(self, path: Path, *, client_id: str, token_url: str) -> None:
        self.path = path
        self._client_id = client_id
        self._token_url = token_url

    def load(self, *, margin_seconds: float, now: float | None = None) -> str | None:
        """A cached access token with more than the margin left, else None. Never raises."""
        now = time.time() if now is None else now
        try:
            info = self.path.lstat()
            if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
                return None  # not ours to trust: replaced by the next save
            if info.st_uid != os.getuid():
                return None
            entry = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(entry, dict):
            return None
        token = entry.get("access_token")
        expires_at = entry.get("expires_at")
        lifetime = entry.get("expires_in")
        if (
            entry.get("client_id") != self._client_id
            or entry.get("token_url") != self._token_url
            or not isinstance(token, str)
            or not token
            or isinstance(expires_at, bool)
            or not isinstance(expires_at, int | float)
            or isinstance(lifetime, bool)
            or not isinstance(lifetime, int | float)
        ):
            return None
        margin = min(margin_seconds, lifetime / 2)  # as the proxy's own cache has it
        return token if expires_at - now > margin else None

    def save(self, access_token: str, *, expires_in: float, now: float | None = None) -> None:
        """Keep the token; a failure to write only costs the next call a token request."""
        now = time.time() if now is None else now
        entry = {
            "version": _FORMAT_VERSION,
            "client_id": self._client_id,
            "token_url": self._token_url,
            "access_token": access_token,
            "expires_in": expires_in,
            "expires_at": now + expires_in,
        }
        try:
            if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
                self.path.unlink()
            write_private_file(self.path, json.dumps(entry) + "\n")
        except OSError as exc:
            log.warning("could not cache the token in %s (%s)", self.path, exc.strerror or exc)
