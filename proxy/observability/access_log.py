"""The access line: one per request, after the answer, with secret-looking query values masked."""

from __future__ import annotations

import logging
import re
from typing import Final
from urllib.parse import unquote_plus

from proxy.exchange import RetryReason
from proxy.observability import logs

# A query value is masked when its key contains one of these (access_token, api_key, code...)
_SECRET_QUERY_KEY: Final = re.compile(
    r"token|secret|passw(?:or)?d|key|code|auth|signature", re.IGNORECASE
)
# ... or has one of these as a word of its own (sig, x_sig, apiSig; not design, signal).
_SECRET_QUERY_WORDS: Final = frozenset({"sig", "pwd"})
_WORD: Final = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_DECODE_ROUNDS: Final = 3  # %2570 is %70 is "p": a name encoded more than once

access_log = logging.getLogger(logs.ACCESS_LOGGER)


def redact_query(path_and_query: str) -> str:
    """The path with query values whose key looks secret replaced by ``***``."""
    if "?" not in path_and_query:  # most paths: one scan, no new string
        return path_and_query
    path, _sep, query = path_and_query.partition("?")
    parts = []
    for pair in query.split("&"):
        key, eq, _value = pair.partition("=")
        parts.append(f"{key}=***" if eq and is_secret_looking(key) else pair)
    return f"{path}?{'&'.join(parts)}"


def is_secret_looking(key: str) -> bool:
    """Whether a query parameter named KEY (as written: ``%6Bey``, ``access%5Ftoken``)
    looks like it carries a secret, once decoded as the server decodes it."""
    for decoded_times in range(_DECODE_ROUNDS + 1):
        if _SECRET_QUERY_KEY.search(key) or _has_secret_word(key):
            return True
        if decoded_times == _DECODE_ROUNDS or ("%" not in key and "+" not in key):
            return False
        key = unquote_plus(key)
    return False


def _has_secret_word(key: str) -> bool:
    lowered = key.lower()
    if not any(word in lowered for word in _SECRET_QUERY_WORDS):  # most keys: no split
        return False
    return any(word.lower() in _SECRET_QUERY_WORDS for word in _WORD.findall(key))


def log_access(
    *,
    method: str,
    path_and_query: str,
    status: int,
    bytes_out: int,
    duration_seconds: float,
    upstream_seconds: float | None,
    retried: RetryReason | None,
    request_id: str,
    profile: str | None = None,
    debug: bool = False,
) -> None:
    """One line per request, written after the answer (with PROFILE when profiles are set);
    at DEBUG instead of INFO when DEBUG (the console's polling, once a second)."""
    level = logging.DEBUG if debug else logging.INFO
    sink = None if debug else logs.line_writer  # the fast way writes INFO lines only
    if sink is None and not access_log.isEnabledFor(level):
        return
    path = redact_query(path_and_query)
    upstream_ms = None if upstream_seconds is None else round(upstream_seconds * 1000, 1)
    duration_ms = round(duration_seconds * 1000, 1)
    message = (
        f"{method} {path} {status} {bytes_out}B {duration_ms}ms "
        f"upstream={'-' if upstream_ms is None else f'{upstream_ms}ms'} "
        f"retried={retried or 'no'} id={request_id}"
    )
    if profile is not None:
        message += f" profile={profile}"
    if sink is not None and not sink.json:  # a text line needs the message only
        sink.write(message, None)
        return
    fields: dict[str, object] = {
        "method": method,
        "path": path,
        "status": status,
        "bytes": bytes_out,
        "duration_ms": duration_ms,
        "upstream_ms": upstream_ms,
        "retried": retried is not None,
        "retry_reason": retried,
        "request_id": request_id,
    }
    if profile is not None:
        fields["profile"] = profile
    if sink is not None:
        sink.write(message, fields)
    else:
        access_log.log(level, "%s", message, extra={"fields": fields})
