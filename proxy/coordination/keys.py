"""What the fleet keeps in Redis, and under which names.

Every name starts with ``coordination.key_prefix``, then an app id: a digest of the
token URL, client id and grant type (members share an app when these match), so that
no name carries a secret or even the client id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def app_id(token_url: str, client_id: str, grant_type: str) -> str:
    material = f"{token_url}\n{client_id}\n{grant_type}".encode()
    return hashlib.sha256(material).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class AppKeys:
    prefix: str
    app: str

    def _name(self, suffix: str) -> str:
        return f"{self.prefix}:{self.app}:{suffix}"

    @property
    def access_token(self) -> str:
        return self._name("access-token")

    @property
    def token_lock(self) -> str:
        """Held by the one member fetching or refreshing for the fleet."""
        return self._name("token-lock")

    @property
    def refresh_token(self) -> str:
        return self._name("refresh-token")

    @property
    def members(self) -> str:
        return self._name("members")

    def window(self, bucket: str) -> str:
        return self._name(f"window:{bucket}")
