"""Host names, origins and URLs from foreign text: the config's and the clients'.

Each returns None for what it cannot read, never raises: a string a client
sends (a Host, an Origin, a request target) reaches yarl and the IDNA codec
only through here.

Plain values (an ASCII name or address, an http(s) URL of plain characters: what
nearly every config holds) are read without yarl, whose import a cached
``criteo-proxy token`` would otherwise pay on every call; the rest goes to yarl.
The plain readings agree with yarl's (tests/config/test_addresses.py).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # not typing's: importing typing costs a cached token's start
if TYPE_CHECKING:
    from typing import Final

    from yarl import URL

# Compiled on first use (re keeps them): a cached token that reads no URL never pays.
# A host name or IPv4 address of letters, digits, dots and hyphens (no IDNA "xn--"
# label: yarl decodes those), or a bracketed IPv6 address; an optional port.
_PLAIN_HOST: Final = (
    r"(?P<host>[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?|\[(?P<v6>[0-9a-f:]{2,39})\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
# http(s)://<plain host>[/path][?query], of unreserved, sub-delim, ':', '@'-free and
# well-formed %XX characters only.
_PLAIN_URL: Final = (
    r"(?P<scheme>https?)://(?P<authority>[^/?#@]+)"
    r"(?P<path>(?:/(?:[a-z0-9._~!$&'()*+,;=:-]|%[0-9a-f]{2})*)*)"
    r"(?:\?(?P<query>(?:[a-z0-9._~!$&'()*+,;=:/?-]|%[0-9a-f]{2})*))?"
)


class PlainUrl:
    """What the config's checks need of a plain http(s) URL. (Not a dataclass nor a
    NamedTuple: their imports cost a cached token's start.)"""

    __slots__ = ("host", "path", "port", "query", "scheme")

    def __init__(self, scheme: str, host: str, port: int | None, path: str, query: str) -> None:
        self.scheme = scheme  # lower case
        self.host = host
        self.port = port
        self.path = path
        self.query = query


def parse_plain_host(value: str) -> tuple[str, int | None] | None:
    """VALUE as parse_host reads it, if it is a plain one; None means "ask parse_host"."""
    match = re.fullmatch(_PLAIN_HOST, value, re.IGNORECASE)
    if match is None:
        return None
    port_text = match["port"]
    port = int(port_text) if port_text is not None else None
    if port is not None and port > 65535:
        return None
    v6 = match["v6"]
    if v6 is not None:
        import ipaddress

        try:
            host = ipaddress.IPv6Address(v6).compressed
        except ValueError:
            return None
        # Only the canonical spelling: yarl normalises the others its own way.
        return (host, port) if host == v6.lower() else None
    host = match["host"].lower()
    if "xn--" in host or ".." in host:
        return None
    return host, port


def parse_plain_url(text: str) -> PlainUrl | None:
    """TEXT, if it is a plain http(s) URL (see _PLAIN_URL); None means "ask parse_url"."""
    match = re.fullmatch(_PLAIN_URL, text, re.IGNORECASE)
    if match is None or "/." in match["path"]:  # yarl resolves dot segments
        return None
    authority = parse_plain_host(match["authority"])
    if authority is None:
        return None
    host, port = authority
    return PlainUrl(match["scheme"].lower(), host, port, match["path"], match["query"] or "")


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``Host``-style ``name[:port]`` / ``[v6][:port]`` -> (lower-case host, port or None)."""
    plain = parse_plain_host(value)
    if plain is not None:
        return plain
    if not value or any(c in value for c in "/?#@\\ \t"):
        return None
    from yarl import URL

    try:
        url = URL(f"http://{value}")
        host = url.raw_host
        port = url.explicit_port
    except ValueError:
        return None
    if not host:
        return None
    return host.lower(), port


def parse_url(text: str) -> URL | None:
    """TEXT as a URL, or None when yarl (or the IDNA codec behind it) cannot read it.

    The host is decoded here, inside the try: yarl decodes it lazily, and bad
    punycode (``https://xn--a.example``) would otherwise raise later, anywhere.
    """
    from yarl import URL

    try:
        url = URL(text)
        url.host  # noqa: B018 - forces the IDNA decoding, see above
    except (ValueError, IndexError):  # UnicodeError (IDNA) is a ValueError; yarl 1.2x
        return None  # raises IndexError for an empty host before a user part: http://[::1]@
    return url


def parse_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` normalised (host lower-case), or None if it is not one."""
    plain = parse_plain_url(origin)
    if plain is not None:
        if plain.path not in ("", "/") or plain.query:
            return None
        return _format_origin(plain.scheme, plain.host, plain.port)
    url = parse_url(origin)
    if url is None or url.scheme not in ("http", "https") or not url.raw_host:
        return None
    if url.raw_path not in ("", "/") or url.query_string or url.fragment or url.user is not None:
        return None
    return _format_origin(url.scheme, url.raw_host.lower(), url.explicit_port)


def _format_origin(scheme: str, host: str, port: int | None) -> str:
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def env_proxy_for(url: str) -> str | None:
    """The HTTPS_PROXY / HTTP_PROXY for URL, unless NO_PROXY exempts its host.

    Resolved once, with the standard library's rules, instead of aiohttp's
    ``trust_env``, which would also read ~/.netrc and add its credentials.
    """
    import urllib.request

    from yarl import URL

    parsed = URL(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parsed.scheme or "")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy or bypass(parsed.host or "", proxies):
        return None
    return proxy


REDIS_SCHEMES: Final = ("redis", "rediss", "unix")


def shown_redis_url(url: str) -> str:
    """A Redis URL as logs, the console and errors may show it: no user info, no query
    (either may hold the password)."""
    import urllib.parse  # here: only a config with coordination pays for it

    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unreadable URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_redis_url(url: str) -> str | None:
    """Why URL is not a Redis URL the client can use, or None when it is one."""
    import urllib.parse  # here: only a config with coordination pays for it

    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "unreadable (a bad port or bracket?)"
    if parts.scheme not in REDIS_SCHEMES:
        return f"unknown scheme {parts.scheme or '(none)'!r}"
    if parts.fragment:
        return "a fragment (#...) has no meaning here"
    if parts.scheme == "unix":
        if not parts.path.startswith("/"):
            return "expected unix:///absolute/path.sock"
        database = urllib.parse.parse_qs(parts.query).get("db", ["0"])[-1]
    else:
        if not parts.hostname:
            return "no host"
        if port == 0:
            return "port 0"
        database = parts.path.lstrip("/") or "0"
    if not database.isascii() or not database.isdigit():
        return f"database {database!r} is not a number"
    return None
