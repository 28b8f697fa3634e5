"""Request ids: the client's ``X-Request-Id`` when it is sane, else one of ours.

The id goes upstream, back to the client, into the access line, the console and
every error body, so that one request can be followed across all of them.
"""

from __future__ import annotations

import itertools
import re
import secrets
from typing import Final

_MAX_REQUEST_ID_LENGTH: Final = 128

_SANE_REQUEST_ID: Final = re.compile(rf"[!-~]{{1,{_MAX_REQUEST_ID_LENGTH}}}")
# Generated ids: a random per-process prefix and a counter (32 hex digits, like a UUID),
# unique without paying for randomness on every request.
_REQUEST_ID_PREFIX: Final = secrets.token_hex(8)
_request_counter = itertools.count(1)


def pick_request_id(offered: str | None) -> str:
    """The client's X-Request-Id if it is a sane token (visible ASCII, at most 128), else ours."""
    if offered and _SANE_REQUEST_ID.fullmatch(offered):
        return offered
    return f"{_REQUEST_ID_PREFIX}{next(_request_counter):016x}"
