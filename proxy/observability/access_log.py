"""The access line: one per request, after the answer, with secret-looking query values masked."""

from __future__ import annotations

import logging
import re
from typing import Final

from proxy.exchange import RetryReason
from proxy.observability import logs

# A query value is masked when its key contains one of these (access_token, api_key, code...).
_SECRET_QUERY_KEY: Final = re.compile(r"token|secret|password|key|code|auth", re.IGNORECASE)

access_log = logging.getLogger(logs.ACCESS_LOGGER)


def redact_query(path_and_query: str) -> str:
    """The path with query values whose key looks secret replaced by ``***``."""
    if "?" not in path_and_query:  # most paths: one scan, no new string
        return path_and_query
    path, _sep, query = path_and_query.partition("?")
    parts = []
    for pair in query.split("&"):
        key, eq, _value = pair.partition("=")
        parts.append(f"{key}=***" if eq and _SECRET_QUERY_KEY.search(key) else pair)
    return f"{path}?{'&'.join(parts)}"


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
