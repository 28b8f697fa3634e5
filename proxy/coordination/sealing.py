"""Tokens kept in Redis are of no use to whoever reads them there.

AES-256-GCM with a 12-byte random nonce per value; the associated data binds a value
to the key it is stored under (and a refresh token to its generation), so that one
cannot be moved to another key. The key is derived by HKDF-SHA256 (info ``criteo-proxy
coordination v1``) from ``coordination.encryption_key`` or, unset, from the app's client
secret; ``previous_encryption_key`` is still read, so that either can rotate.
"""

from __future__ import annotations

import base64
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from proxy.coordination.outcomes import Unreadable

_INFO: Final = b"criteo-proxy coordination v1"
_NONCE_BYTES: Final = 12


def derive_key(material: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(material)


class Sealer:
    def __init__(self, key_material: bytes, previous_key_material: bytes | None = None) -> None:
        self._current = AESGCM(derive_key(key_material))
        self._readers = [self._current]
        if previous_key_material is not None:
            self._readers.append(AESGCM(derive_key(previous_key_material)))

    def seal(self, plaintext: str, associated: bytes) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._current.encrypt(nonce, plaintext.encode(), associated)
        return base64.b64encode(sealed).decode("ascii")

    def open(self, sealed: str, associated: bytes) -> str:
        try:
            raw = base64.b64decode(sealed, validate=True)
        except ValueError as exc:
            raise Unreadable("not a sealed value") from exc
        nonce, ciphertext = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        for reader in self._readers:
            try:
                return reader.decrypt(nonce, ciphertext, associated).decode()
            except (InvalidTag, ValueError, UnicodeDecodeError):
                continue
        raise Unreadable("no key of ours opens it")
