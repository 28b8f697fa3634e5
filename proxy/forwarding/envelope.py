"""Criteo's JSON envelope, read with bounds: the trace ids of an error answer, and the
``warnings`` of type ``deprecation`` in any JSON answer.

The body is the upstream's, so anything may be in it. It is read only as far as
the bounds allow: at most ``ERROR_BODY_BYTES`` of an error once inflated, the first
and last ``WATCH_BYTES`` of an answer that streams past (never all of it: reports
can be gigabytes), and nested at most ``MAX_DEPTH`` deep (Python's json parser
recurses: an error body 8,000 arrays deep would raise RecursionError where the
proxy only wanted a trace id).
"""

from __future__ import annotations

import collections
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
# How much of a JSON answer is watched for warnings, at its start and at its end:
# Criteo's envelope puts "warnings" after "data", so a large answer has them last.
WATCH_BYTES: Final = 64 * 1024
_WARNINGS_KEY: Final = re.compile(r'"warnings"\s*:\s*\[')
_MAX_WARNINGS_KEYS: Final = 8  # "warnings" keys looked at in one piece of text
_WARNING_TEXT_CHARS: Final = 200
_DECODER: Final = json.JSONDecoder()


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


def find_deprecations(text: str) -> list[str]:
    """What Criteo says in the ``warnings`` of type ``deprecation`` found in TEXT (a whole
    envelope, or its first or last bytes): each warning's title, detail or code."""
    said: list[str] = []
    for match in itertools.islice(_WARNINGS_KEY.finditer(text), _MAX_WARNINGS_KEYS):
        start = match.end() - 1
        if nesting_depth(text[start:]) > MAX_DEPTH:
            continue
        try:
            warnings, _end = _DECODER.raw_decode(text, start)
        except ValueError:  # cut off by the end of the piece, or not JSON
            continue
        for warning in warnings:
            if isinstance(warning, dict) and warning.get("type") == "deprecation":
                words = warning.get("title") or warning.get("detail") or warning.get("code")
                said.append(str(words or "deprecation")[:_WARNING_TEXT_CHARS])
    return said


class WarningWatch:
    """Watches a JSON answer go by for deprecation warnings, holding at most its first
    and last WATCH_BYTES (the chunks themselves, not copies); read once at the end."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding.strip().lower()
        self._head: list[bytes] = []
        self._head_bytes = 0
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_bytes = 0
        self._seen_bytes = 0

    def feed(self, chunk: bytes) -> None:
        self._seen_bytes += len(chunk)
        if self._head_bytes < WATCH_BYTES:
            part = chunk[: WATCH_BYTES - self._head_bytes]
            self._head.append(part)
            self._head_bytes += len(part)
        if self._encoding != "identity":
            return  # a compressed answer's end cannot be inflated alone: its start only
        tail = self._tail
        tail.append(chunk)
        self._tail_bytes += len(chunk)
        while self._tail_bytes - len(tail[0]) >= WATCH_BYTES:
            self._tail_bytes -= len(tail.popleft())

    def deprecations(self) -> list[str]:
        """What the answer's deprecation warnings said, as far as the watch saw them."""
        head = b"".join(self._head)
        if self._encoding != "identity":
            inflated = _inflate_start(head, self._encoding)
            return [] if inflated is None else _deprecations_in(inflated)
        said = _deprecations_in(head)
        if self._seen_bytes > WATCH_BYTES:  # the end is another piece of the answer
            said += _deprecations_in(b"".join(self._tail)[-WATCH_BYTES:])
        return said


def _deprecations_in(piece: bytes) -> list[str]:
    if b"deprecation" not in piece:  # most answers: one C-speed scan, nothing parsed
        return []
    return find_deprecations(piece.decode("utf-8", "replace"))


def _inflate_start(body: bytes, encoding: str) -> bytes | None:
    """The first WATCH_BYTES of a compressed answer, inflated from its first bytes."""
    wbits = _INFLATE_WBITS.get(encoding)
    if wbits is None:
        return None
    try:
        return zlib.decompressobj(wbits).decompress(body, WATCH_BYTES)
    except zlib.error:
        return None
