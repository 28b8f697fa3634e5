"""Logging set-up and request ids."""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from typing import Final

from aiohttp.http_exceptions import HttpProcessingError

from .config import LogFormat, LogLevel

_MAX_REQUEST_ID_LENGTH: Final = 128


def pick_request_id(offered: str | None) -> str:
    """The client's X-Request-Id if it is a sane token, else a new one."""
    if offered and len(offered) <= _MAX_REQUEST_ID_LENGTH and all("!" <= c <= "~" for c in offered):
        return offered
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_timestamp(record.created)


class MalformedRequestFilter(logging.Filter):
    """A garbage request is the client's problem: one WARNING line, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            first_line = str(exc.message).strip().splitlines()[0] if exc.message else ""
            record.msg = "rejected a malformed request: %s %s"
            record.args = (exc.code, first_line[:200])
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(level: LogLevel, log_format: LogFormat) -> None:
    """Send our logs (and aiohttp's) to stderr: stdout is kept for what the user asked for."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(MalformedRequestFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def _utc_timestamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"
