"""Logging set-up: every line the proxy writes, text or JSON, to stderr from a writer thread.

The access line (``access_log``) is written through ``line_writer`` once logging is
configured, without a LogRecord per request."""

from __future__ import annotations

import atexit
import collections
import functools
import json
import logging
import sys
import threading
import time
from contextvars import ContextVar
from typing import Final, TextIO

from proxy.config.schema import LogFormat, LogLevel

_MAX_BUFFERED_LINES: Final = 100_000
ACCESS_LOGGER: Final = "criteo_proxy.access"

# The profile being served (DESIGN 9): set per request and for each profile's token
# tasks; shown on every log line when profiles are configured.
CURRENT_PROFILE: ContextVar[str | None] = ContextVar("criteo_proxy_profile", default=None)


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
        if profile is not None and record.name != ACCESS_LOGGER:  # the access line has it
            message += f" profile={profile}"
        line = build_text_line(record.created, record.levelname, record.name, message)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class MalformedRequestFilter(logging.Filter):
    """A garbage request is the client's problem: one WARNING line, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        # Only aiohttp's server raises it: a command that never loaded aiohttp has none.
        http_exceptions = sys.modules.get("aiohttp.http_exceptions")
        if http_exceptions is not None and isinstance(exc, http_exceptions.HttpProcessingError):
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
    global line_writer
    line_writer = LineWriter(handler, log_format) if root.isEnabledFor(logging.INFO) else None


class LineWriter:
    """INFO lines of one logger straight into the log writer's batch, without a LogRecord.

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
            line = build_json_line(now, "info", ACCESS_LOGGER, message, fields or {})
        else:
            line = build_text_line(now, "INFO", ACCESS_LOGGER, message)
        self._handler.write_line(line)


# Set by configure_logging when INFO lines are written: the access line's fast way out.
line_writer: LineWriter | None = None


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _utc_timestamp(created: float) -> str:
    # strftime once per second, not once per line: the access log is on the hot path.
    return f"{_utc_second(int(created))}.{int(created % 1 * 1000):03d}Z"
