"""Plain hosts and URLs are read without yarl, exactly as yarl reads them.

The config's checks (and so every command, a cached ``criteo-proxy token`` included)
read the usual values without importing yarl; anything unusual goes to yarl. Each
plain reading is compared here with yarl's own, over generated text.
"""

from __future__ import annotations

import string

from hypothesis import example, given
from hypothesis import strategies as st
from yarl import URL

from proxy.config.addresses import parse_host, parse_origin, parse_plain_host, parse_plain_url

HOST_TEXT = st.text(alphabet=string.ascii_letters + string.digits + ".-:[]_", max_size=40)
URL_TEXT = st.builds(
    "".join,
    st.lists(
        st.sampled_from(
            [
                "http://",
                "https://",
                "HTTP://",
                "a",
                "B",
                "0",
                "9",
                ".",
                "-",
                ":",
                "8080",
                "/",
                "?",
                "=",
                "&",
                "%2F",
                "%zz",
                "%",
                "#",
                "@",
                "[::1]",
                "[",
                "]",
                "xn--",
                "~",
                "..",
                "%41",
                " ",
                "é",
                "localhost",
                "127.0.0.1",
                "api.criteo.com",
            ]
        ),
        max_size=12,
    ),
)
# Mostly well-formed: scheme, host, port, path and query pieces, each sometimes odd.
URL_PIECES = st.builds(
    "{}{}{}{}{}".format,
    st.sampled_from(["http://", "https://", "HTTPS://", "ftp://", "http:/", ""]),
    HOST_TEXT,
    st.sampled_from(["", ":0", ":80", ":8080", ":65535", ":65536", ":", ":x", "@h"]),
    st.lists(
        st.sampled_from(["/", "/a", "/.", "/..", "//", "/%2F", "/%zz", "/~x", "/;p", "/@"]),
        max_size=4,
    ).map("".join),
    st.sampled_from(["", "?", "?a=1", "?a=%20&b", "?x/y?", "#f", "?a#f", "?%"]),
)


def yarl_host(value: str) -> tuple[str, int | None] | None:
    """parse_host as it was: through yarl alone."""
    try:
        url = URL(f"http://{value}")
        host, port = url.raw_host, url.explicit_port
    except ValueError:
        return None
    return (host.lower(), port) if host else None


@given(HOST_TEXT)
@example("LOCALHOST")
@example("[::1]:8080")
@example("[0:0::1]")
@example("x:65536")
@example("x:08080")
@example("127.000.0.1")
@example("2130706433")
def test_a_plain_host_reads_as_yarl_reads_it(value: str) -> None:
    plain = parse_plain_host(value)
    if plain is not None:
        assert plain == yarl_host(value)
    assert parse_host(value) == yarl_host(value) or not value


@given(URL_TEXT | URL_PIECES)
@example("https://api.criteo.com")
@example("http://127.0.0.1:1/x/y?a=1")
@example("https://a.b/x/..")
@example("https://a.b:99999")
@example("http://[::1]:80/")
def test_a_plain_url_reads_as_yarl_reads_it(text: str) -> None:
    plain = parse_plain_url(text)
    if plain is None:
        return
    url = URL(text)
    assert plain.scheme == url.scheme
    assert plain.host == url.raw_host
    assert plain.port == url.explicit_port
    assert bool(plain.query) == bool(url.query_string)
    assert (plain.path in ("", "/")) == (url.raw_path in ("", "/"))
    assert url.user is None
    assert not url.fragment


@given(URL_TEXT | URL_PIECES)
@example("http://localhost:3000")
@example("HTTP://LOCALHOST:3000/")
@example("http://[::1]:8080")
@example("http://[::1]@")  # yarl raises IndexError on it
def test_an_origin_reads_the_same_with_or_without_yarl(text: str) -> None:
    try:
        url = URL(text)
        url.host  # noqa: B018 - the IDNA decoding may fail
    except (ValueError, IndexError):
        url = None
    expected = None
    if (
        url is not None
        and url.scheme in ("http", "https")
        and url.raw_host
        and url.raw_path in ("", "/")
        and not url.query_string
        and not url.fragment
        and url.user is None
    ):
        host = url.raw_host.lower()
        host = f"[{host}]" if ":" in host else host
        port = f":{url.explicit_port}" if url.explicit_port is not None else ""
        expected = f"{url.scheme}://{host}{port}"
    assert parse_origin(text) == expected
