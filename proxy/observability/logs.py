"""Logging set-up, the access log and request ids."""

from __future__ import annotations

import atexit
import collections
import functools
import itertools
import json
import logging
import re
import secrets
import sys
import threading
import time
from contextvars import ContextVar
from typing import Final, TextIO

from aiohttp.http_exceptions import HttpProcessingError

from proxy.config.schema import LogFormat, LogLevel
from proxy.exchange import RetryReason

_MAX_REQUEST_ID_LENGTH: Final = 128
_MAX_BUFFERED_LINES: Final = 100_000
# A query value is masked when its key contains one of these (access_token, api_key, code...).
_SECRET_QUERY_KEY: Final = re.compile(r"token|secret|password|key|code|auth", re.IGNORECASE)

access_log = logging.getLogger("criteo_proxy.access")

# The profile being served (DESIGN 9): set per request and for each profile's token
# tasks; shown on every log line when profiles are configured.
CURRENT_PROFILE: ContextVar[str | None] = ContextVar("criteo_proxy_profile", default=None)


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


def build_json_line(
    created: float, level: str, logger: str, message: str, fields: dict[str, object] | None
) -> str:
    """One log line for collectors: the shape shared by every JSON line we write."""
    entry: dict[str, object] = {
        "time": _utc_timestamp(created),
        "level": level,
        "logger": logger,
        "message": message,
    }
    if fields:
        entry.update(fields)
    return json.dumps(entry, separators=(",", ":"), default=str)


def build_text_line(created: float, level: str, logger: str, message: str) -> str:
    if not message.isprintable():  # one C-speed scan; the escape is for the rare line
        message = escape_unprintable(message)
    return f"{_utc_timestamp(created)} {level} {logger}: {message}"


def escape_unprintable(text: str) -> str:
    """Control and separator characters as escapes (``\\u2028``, ``\\x85``).

    A client's header value may carry U+2028, U+0085 or U+001E, which many log
    viewers (and str.splitlines) take for a line break: with them, a client could
    forge a log line. JSON lines are safe already (json.dumps escapes them).
    """
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


class ProfileFilter(logging.Filter):
    """Notes on each record the profile it was logged for (profiles configured only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "profile"):
            record.profile = CURRENT_PROFILE.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        fields = dict(fields) if isinstance(fields, dict) else {}
        profile = getattr(record, "profile", None)
        if profile is not None:
            fields.setdefault("profile", profile)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return build_json_line(
            record.created, record.levelname.lower(), record.name, record.getMessage(), fields
        )


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        profile = getattr(record, "profile", None)
        if profile is not None and record.name != access_log.name:  # the access line has it
            message += f" profile={profile}"
        line = build_text_line(record.created, record.levelname, record.name, message)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


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


class BatchingStreamHandler(logging.Handler):
    """Formats in the caller, writes from a thread in batches.

    A slow terminal or pipe never blocks the event loop, and a busy proxy pays
    one write (and one thread wake-up) per batch instead of one per line.
    """

    def __init__(self, stream: TextIO, interval_seconds: float = 0.05) -> None:
        super().__init__()
        self._stream = stream
        # Bounded: if stderr blocks for good, the oldest lines go, not the memory.
        self._lines: collections.deque[str] = collections.deque(maxlen=_MAX_BUFFERED_LINES)
        self._interval_seconds = interval_seconds
        self._stopped = threading.Event()
        self._writer = threading.Thread(target=self._write_batches, name="log-writer", daemon=True)
        self._writer.start()

    def write_line(self, line: str) -> None:
        self._lines.append(line + "\n")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging's contract: never raise from emit
            self.handleError(record)

    def _write_batches(self) -> None:
        while not self._stopped.wait(self._interval_seconds):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        lines = self._lines
        batch = [lines.popleft() for _ in range(len(lines))]
        if batch:
            try:
                self._stream.write("".join(batch))
                self._stream.flush()
            except (OSError, ValueError):
                pass  # stderr is gone (closed pipe): nowhere left to say so; keep running

    def close(self) -> None:
        self._stopped.set()
        if self._writer.is_alive() and threading.current_thread() is not self._writer:
            self._writer.join(timeout=5)
        super().close()


def configure_logging(level: LogLevel, log_format: LogFormat, *, profiles: bool = False) -> None:
    """Send our logs (and aiohttp's) to stderr: stdout is kept for what the user asked for.

    With PROFILES, every line says which profile it is about (``profile=<name>``).
    """
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(MalformedRequestFilter())
    if profiles:
        handler.addFilter(ProfileFilter())
    atexit.register(handler.close)  # writes what is still buffered
    # The records need none of these, and gathering them costs on every line (the
    # "Optimization" section of the logging HOWTO): the caller's frame, thread and
    # process names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    global _access_sink
    _access_sink = AccessLogSink(handler, log_format) if root.isEnabledFor(logging.INFO) else None


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
) -> None:
    """One line per request, written after the answer (with PROFILE when profiles are set)."""
    sink = _access_sink
    if sink is None and not access_log.isEnabledFor(logging.INFO):
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
        access_log.info("%s", message, extra={"fields": fields})


class AccessLogSink:
    """The access line straight into the log writer's batch, without a LogRecord.

    Used once logging is configured for the server; the line is the one the
    formatters would make. Building a LogRecord per request was most of the
    access log's cost (tests/bench/access_log_cost.py).
    """

    def __init__(self, handler: BatchingStreamHandler, log_format: LogFormat) -> None:
        self._handler = handler
        self.json = log_format == "json"

    def write(self, message: str, fields: dict[str, object] | None) -> None:
        """FIELDS: the line's fields, for JSON lines (text lines have the message only)."""
        now = time.time()
        if self.json:
            line = build_json_line(now, "info", access_log.name, message, fields or {})
        else:
            line = build_text_line(now, "INFO", access_log.name, message)
        self._handler.write_line(line)


_access_sink: AccessLogSink | None = None


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _utc_timestamp(created: float) -> str:
    # strftime once per second, not once per line: the access log is on the hot path.
    return f"{_utc_second(int(created))}.{int(created % 1 * 1000):03d}Z"
