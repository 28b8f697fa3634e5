"""``criteo-proxy status``: ask a running proxy for its console documents.

The address is the one ``run`` would listen on (from the config and flags), or
``--url``; a Unix socket is supported. With inbound keys configured, the first
key is sent as X-Proxy-Key, to that address only: a redirect is never followed.
Whatever answers there is not trusted to be the proxy: its answers are read bounded,
and every word of it that ends up in a message is escaped.

Two GETs on loopback, one after the other: the standard library's ``http.client``
does it without an event loop, so that ``status`` starts as fast as Python does
(no asyncio, no aiohttp).
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from dataclasses import dataclass, field

from proxy.config.schema import Config, ListenConfig
from proxy.observability.logs import escape_unprintable

_TIMEOUT_SECONDS = 5.0
_LAST_REQUESTS = 20
# The proxy's answers are far smaller (one of /_proxy/requests stops at 1 MiB).
_MAX_ANSWER_BYTES = 8 * 1024 * 1024


class StatusUnavailable(Exception):
    """Nothing usable answered: one line, saying where and why (escaped: the reason may
    quote the server, and a terminal must see no control character of its)."""

    def __init__(self, message: str) -> None:
        super().__init__(escape_unprintable(message))


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusTarget:
    base_url: str  # http://host:port (for a Unix socket: http://localhost)
    unix_socket: str | None = None
    proxy_key: str | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        return f"unix:{self.unix_socket}" if self.unix_socket else self.base_url


@dataclass(frozen=True, slots=True)
class StatusReport:
    status: dict[str, object]
    requests: list[dict[str, object]]  # the last few, oldest first


def build_status_target(config: Config, url: str | None) -> StatusTarget:
    key = config.security.api_keys[0].reveal() if config.security.api_keys else None
    if url is not None:
        if url.startswith("unix:"):
            return StatusTarget(base_url="http://localhost", unix_socket=url[5:], proxy_key=key)
        return StatusTarget(base_url=_origin_of(url), proxy_key=key)
    return StatusTarget(
        base_url=_listen_url(config.listen), unix_socket=config.listen.unix_socket, proxy_key=key
    )


def _listen_url(listen: ListenConfig) -> str:
    if listen.unix_socket:
        return "http://localhost"
    # A wildcard bind is reached on loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen.host, listen.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{listen.port}"


def _origin_of(url: str) -> str:
    """``http(s)://host[:port]`` of URL (its path, if any, is not the console's)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises ValueError when it is not a number
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise StatusUnavailable(f"--url: expected http://host:port or unix:PATH, got {url!r}")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the proxy's listen.unix_socket)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _connect(target: StatusTarget) -> http.client.HTTPConnection:
    if target.unix_socket:
        return _UnixConnection(target.unix_socket, _TIMEOUT_SECONDS)
    parts = urllib.parse.urlsplit(target.base_url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return kind(parts.netloc, timeout=_TIMEOUT_SECONDS)


def fetch_status(target: StatusTarget) -> StatusReport:
    connection = _connect(target)  # one kept-alive connection for both documents
    try:
        status = _get_json(connection, target, "/_proxy/status")
        if not isinstance(status, dict):
            raise StatusUnavailable(f"{target.shown} answered, but not with criteo-proxy's status")
        # An answer of /_proxy/requests stops at a byte bound, oldest first: ask for the
        # last few by their seq.
        after = max(0, _last_seq(status) - _LAST_REQUESTS)
        page = _get_json(connection, target, f"/_proxy/requests?after={after}")
    finally:
        connection.close()
    requests = page.get("requests") if isinstance(page, dict) else None
    if not isinstance(requests, list):
        raise StatusUnavailable(f"{target.shown} answered, but not with criteo-proxy's status")
    return StatusReport(status, [r for r in requests[-_LAST_REQUESTS:] if isinstance(r, dict)])


def _last_seq(status: dict[str, object]) -> int:
    console = status.get("console")
    seq = console.get("last_seq") if isinstance(console, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else 0


def _get_json(connection: http.client.HTTPConnection, target: StatusTarget, path: str) -> object:
    headers = {"X-Proxy-Key": target.proxy_key} if target.proxy_key else {}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read(_MAX_ANSWER_BYTES + 1)
    except TimeoutError as exc:
        raise StatusUnavailable(
            f"{target.shown} did not answer within {_TIMEOUT_SECONDS:g} s"
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise StatusUnavailable(
            f"nothing answers at {target.shown} ({type(exc).__name__}): is criteo-proxy "
            "running there? (--url URL, or the --config / --port it runs with)"
        ) from exc
    if 300 <= response.status < 400:  # http.client follows none: say why that is
        raise StatusUnavailable(
            f"{target.shown} answered {response.status}, a redirect: not followed (the "
            "inbound key goes to the address given only; give --url the proxy's own address)"
        )
    if response.status != 200:
        raise StatusUnavailable(_refusal(target, response.status, body))
    if len(body) > _MAX_ANSWER_BYTES:
        raise StatusUnavailable(
            f"{target.shown}{path} answered more than {_MAX_ANSWER_BYTES} bytes: "
            "not criteo-proxy's console"
        )
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise StatusUnavailable(f"{target.shown}{path} did not answer JSON") from exc


def _refusal(target: StatusTarget, status: int, body: bytes) -> str:
    try:
        error = json.loads(body)["errors"][0]
        reason = f"{error['code']}: {error['detail']}"[:500]
    except (ValueError, RecursionError, KeyError, IndexError, TypeError):
        reason = "not criteo-proxy's console?"
    if status == 404:
        reason += " (is console.enabled false there?)"
    return f"{target.shown} answered {status} ({reason})"
