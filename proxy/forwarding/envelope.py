"""Criteo's JSON envelope, read with bounds: the trace ids of an error answer.

The body is the upstream's, so anything may be in it. It is read only as far as
the bounds allow: at most ``ERROR_BODY_BYTES`` once inflated, and nested at most
``MAX_DEPTH`` deep (Python's json parser recurses: an error body 8,000 arrays deep
would raise RecursionError where the proxy only wanted a trace id).
"""

from __future__ import annotations

import itertools
import json
import re
import zlib
from typing import Final

# Error bodies up to this size (inflated) are kept for the console and searched for trace ids.
ERROR_BODY_BYTES: Final = 8 * 1024
# Criteo's envelopes nest a handful deep; anything past this is not one.
MAX_DEPTH: Final = 64
_INFLATE_WBITS: Final = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "identity": 0}
# A JSON string, or what is left of one cut off by the end of the text. Possessive, and
# matching an unterminated string to the end: one pass, whatever the quotes and escapes.
_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET: Final = re.compile(r"[^\[\]{}]++")
_TRACE_ID_CHARS: Final = 128


def inflate_bounded(body: bytes, encoding: str) -> bytes | None:
    """BODY as text bytes of at most ERROR_BODY_BYTES, or None (too big, unknown coding)."""
    wbits = _INFLATE_WBITS.get(encoding.strip().lower())
    if wbits is None:
        return None
    if wbits == 0:
        return body if len(body) <= ERROR_BODY_BYTES else None
    inflater = zlib.decompressobj(wbits)
    try:
        readable = inflater.decompress(body, ERROR_BODY_BYTES + 1)
    except zlib.error:
        return None
    return readable if len(readable) <= ERROR_BODY_BYTES else None


def nesting_depth(text: str) -> int:
    """How deep the arrays and objects of TEXT (JSON, or a piece of it) nest at most."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(1 if b in "[{" else -1 for b in brackets), default=0)


def parse_json_bounded(text: str) -> object | None:
    """TEXT as JSON if it nests at most MAX_DEPTH deep; None if it is not JSON or deeper."""
    if nesting_depth(text) > MAX_DEPTH:
        return None
    try:
        value: object = json.loads(text)
    except ValueError:  # not JSON; also a number of more digits than int() takes
        return None
    return value


def find_trace_ids(body: bytes) -> list[str]:
    """traceId / traceIdentifier values of a Criteo error envelope, if it is one."""
    envelope = parse_json_bounded(body.decode("utf-8", "replace"))
    errors = envelope.get("errors") if isinstance(envelope, dict) else None
    if not isinstance(errors, list):
        return []
    found: list[str] = []
    for error in errors:
        if isinstance(error, dict):
            for key in ("traceId", "traceIdentifier"):
                value = error.get(key)
                if isinstance(value, str) and value[:_TRACE_ID_CHARS] not in found:
                    found.append(value[:_TRACE_ID_CHARS])
    return found
