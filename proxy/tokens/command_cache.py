"""The access token ``criteo-proxy token`` prints, kept for the next call.

``curl -H "Authorization: Bearer $(criteo-proxy token)"`` in a loop would
otherwise cost a token request (and Criteo's patience) per call; like oauth2l
and gcloud, the command reuses a token while it has more than
``tokens.refresh_margin`` left. The file is ``token-<profile>.json`` under
``$XDG_CACHE_HOME/criteo-proxy`` (default ``~/.cache/criteo-proxy``), never in
the config directory, mode 0600 in a 0700 directory, replaced atomically. It is
keyed by client id, token URL and a fingerprint of the client secret (a changed
secret is a new app); a corrupt, foreign, oversized or too-open file, or one in a
directory others may write, is ignored and replaced, never an error.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Mapping

TYPE_CHECKING = False  # not typing's: importing typing costs a cached token's start
if TYPE_CHECKING:
    import logging
    from pathlib import Path
    from typing import Final


_FORMAT_VERSION: Final = 3  # 2: keyed by the secret's fingerprint too; 3: a BLAKE2 one
_MAX_FILE_BYTES: Final = 64 * 1024  # a token entry is well under 4 KiB


def _log() -> logging.Logger:
    """Only a write logs: a cache hit does not import logging (it starts as fast as Python)."""
    import logging

    return logging.getLogger("criteo_proxy.token_cache")


def default_cache_path(profile: str, environ: Mapping[str, str]) -> str:
    """A str, not a Path: a cache hit does not import pathlib."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "criteo-proxy", f"token-{profile}.json")


def secret_fingerprint(client_secret: str) -> str:
    """Tells two secrets apart without keeping either (a BLAKE2b digest of the secret,
    personalised to this file, so that it matches no other digest of it)."""
    secret = client_secret.encode()
    try:  # what hashlib.blake2b is, without hashlib's loading of OpenSSL (8 ms of a start)
        from _blake2 import blake2b
    except ImportError:  # a Python built without BLAKE2 (some FIPS builds): SHA-256 instead
        import hashlib

        return hashlib.sha256(b"criteo-proxy-tc:" + secret).hexdigest()[:32]
    return blake2b(secret, digest_size=16, person=b"criteo-proxy-tc").hexdigest()


class TokenCache:
    def __init__(
        self, path: str | os.PathLike[str], *, client_id: str, token_url: str, client_secret: str
    ) -> None:
        self.path = path  # as given; a str from default_cache_path
        self._client_id = client_id
        self._token_url = token_url
        self._secret_fingerprint = secret_fingerprint(client_secret)

    def load(self, *, margin_seconds: float, now: float | None = None) -> str | None:
        """A cached access token with more than the margin left, else None. Never raises."""
        now = time.time() if now is None else now
        try:
            if not _is_private_directory(os.path.dirname(os.fspath(self.path))):
                return None  # others could have put this file there
            entry = json.loads(_read_private_file(os.fspath(self.path)))
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
            or entry.get("secret_fingerprint") != self._secret_fingerprint
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
            "secret_fingerprint": self._secret_fingerprint,
            "access_token": access_token,
            "expires_in": expires_in,
            "expires_at": now + expires_in,
        }
        from pathlib import Path

        from proxy.tokens.private_files import write_private_file  # tempfile: only to write

        path = Path(self.path)
        try:
            _make_private_directory(path.parent)
            if path.is_symlink() or (path.exists() and not path.is_file()):
                path.unlink()
            write_private_file(path, json.dumps(entry) + "\n")
        except OSError as exc:
            _log().warning("could not cache the token in %s (%s)", self.path, exc.strerror or exc)


def _is_private_directory(directory: str) -> bool:
    info = os.lstat(directory)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def _make_private_directory(directory: Path) -> None:  # only on a write: pathlib is loaded
    """Create it 0700, or tighten one of ours that others may enter; refuse anyone else's."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise PermissionError(f"{directory} is not a directory of this user's")
    if info.st_mode & 0o077:
        os.chmod(directory, 0o700)
        _log().info("tightened %s to mode 0700: it holds an access token", directory)


def _read_private_file(path: str) -> str:
    """The file's text, if it is a regular file of ours that no one else may read, and
    small: a planted link, a FIFO or a huge file is not read."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_mode & 0o077
            or info.st_uid != os.getuid()
            or info.st_size > _MAX_FILE_BYTES
        ):
            raise ValueError("not a private token cache file")
        return handle.read(_MAX_FILE_BYTES + 1).decode("utf-8")
