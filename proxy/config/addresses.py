"""Host names, origins and URLs from foreign text: the config's and the clients'.

Each returns None for what it cannot read, never raises: a string a client
sends (a Host, an Origin, a request target) reaches yarl and the IDNA codec
only through here.
"""

from __future__ import annotations

import urllib.parse
import urllib.request

from yarl import URL


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``Host``-style ``name[:port]`` / ``[v6][:port]`` -> (lower-case host, port or None)."""
    if not value or any(c in value for c in "/?#@\\ \t"):
        return None
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
    try:
        url = URL(text)
        url.host  # noqa: B018 - forces the IDNA decoding, see above
    except ValueError:  # UnicodeError (IDNA) is a ValueError
        return None
    return url


def parse_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` normalised (host lower-case), or None if it is not one."""
    url = parse_url(origin)
    if url is None or url.scheme not in ("http", "https") or not url.raw_host:
        return None
    if url.raw_path not in ("", "/") or url.query_string or url.fragment or url.user is not None:
        return None
    host = url.raw_host
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{url.explicit_port}" if url.explicit_port is not None else ""
    return f"{url.scheme}://{host.lower()}{port}"


def env_proxy_for(url: str) -> str | None:
    """The HTTPS_PROXY / HTTP_PROXY for URL, unless NO_PROXY exempts its host.

    Resolved once, with the standard library's rules, instead of aiohttp's
    ``trust_env``, which would also read ~/.netrc and add its credentials.
    """
    parsed = URL(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parsed.scheme or "")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy or bypass(parsed.host or "", proxies):
        return None
    return proxy


REDIS_SCHEMES = ("redis", "rediss", "unix")


def shown_redis_url(url: str) -> str:
    """A Redis URL as logs, the console and errors may show it: no user info, no query
    (either may hold the password)."""
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
