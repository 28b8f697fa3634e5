"""Host names, origins and URLs from foreign text: the config's and the clients'.

Each returns None for what it cannot read, never raises: a string a client
sends (a Host, an Origin, a request target) reaches yarl and the IDNA codec
only through here.
"""

from __future__ import annotations

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
    except (ValueError, IndexError):  # UnicodeError (IDNA) is a ValueError; yarl 1.2x
        return None  # raises IndexError for an empty host before a user part: http://[::1]@
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
