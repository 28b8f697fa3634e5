"""A token endpoint that echoes what it was sent (issue 20, item 10): the client secret and
the refresh token never come back out of the proxy, in whatever encoding the endpoint
echoed them: the form as posted, percent-encoded, JSON-escaped, HTML-escaped.

The stand-in token endpoint is a real aiohttp server on loopback; the proxy serves in
front of the fake Criteo.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.fakes.criteo import DEMO_CLIENT_ID
from proxy.tokens.store import TokenStore
from tests.conftest import StartProxy, assert_absent

ME = "/2026-07/advertisers/me"
# Characters every encoding changes: a slash, a plus, form separators, a quote, a
# backslash, a space and a letter outside ASCII.
SECRET = 'cs/7+a&b=c "q" \\ é-SeCrEt-91f'
REFRESH_TOKEN = 'rt/9+x&y=z "r" \\ ü-ReFrEsH-3c0'


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


# How an endpoint might repeat what it was sent, in its error_description.
ECHOES: dict[str, Callable[[bytes, dict[str, str]], str]] = {
    "form-as-posted": lambda raw, form: raw.decode(),
    "quote": lambda raw, form: " ".join(quote(v) for v in form.values()),
    "quote-nothing-safe": lambda raw, form: " ".join(quote(v, safe="") for v in form.values()),
    "quote-plus": lambda raw, form: " ".join(quote_plus(v) for v in form.values()),
    "lower-case-hex": lambda raw, form: _lower_hex(raw.decode()),
    "json": lambda raw, form: json.dumps(form),
    "json-not-ascii": lambda raw, form: json.dumps(form, ensure_ascii=False),
    "html": lambda raw, form: html.escape(" ".join(form.values())),
    "plain": lambda raw, form: " ".join(form.values()),
}


@pytest.fixture
async def echoing_token_url(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> str:
    """Token endpoints that refuse every request, repeating it: <base>/<echo style>/token."""

    async def token(request: web.Request) -> web.Response:
        raw = await request.read()
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        said = ECHOES[request.match_info["echo"]](raw, form)
        return web.json_response(
            {"error": "invalid_request", "error_description": f"bad request: {said}"},
            status=400,
        )

    app = web.Application()
    app.router.add_post("/{echo}/token", token)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def everything_the_proxy_says(
    proxy: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> list[str]:
    """The client's error, readiness, status, console history, metrics and the log."""
    answer = await proxy.get(ME)
    assert answer.status == 502
    said = [await answer.text()]
    for path in ("/_proxy/ready", "/_proxy/status", "/_proxy/requests", "/_proxy/metrics"):
        said.append(await (await proxy.get(path)).text())
    said.append(caplog.text)
    said.extend(r.getMessage() for r in caplog.records)
    assert "bad request:" in said[0]  # the endpoint's words did reach the client
    return said


def encodings_of(secret: str) -> set[str]:
    """The secret, and every form of it an echo above produces."""
    return {
        secret,
        quote(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        _lower_hex(quote_plus(secret)),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        html.escape(secret),
    }


@pytest.mark.parametrize("echo", sorted(ECHOES))
async def test_an_echoed_client_secret_is_redacted_in_every_encoding(
    start_proxy: StartProxy,
    echoing_token_url: str,
    caplog: pytest.LogCaptureFixture,
    echo: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = await start_proxy(
        upstream={"token_url": f"{echoing_token_url}/{echo}/token"},
        credentials={"client_id": "app-10", "client_secret": SECRET},
    )
    said = await everything_the_proxy_says(proxy, caplog)
    assert_absent(encodings_of(SECRET), *said)


@pytest.mark.parametrize("echo", sorted(ECHOES))
async def test_an_echoed_refresh_token_is_redacted_in_every_encoding(
    start_proxy: StartProxy,
    echoing_token_url: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    echo: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    store = tmp_path / "tokens.json"
    TokenStore(str(store)).save(DEMO_CLIENT_ID, REFRESH_TOKEN, generation=1)
    proxy = await start_proxy(
        upstream={"token_url": f"{echoing_token_url}/{echo}/token"},
        credentials={
            "grant_type": "authorization_code",
            "client_id": DEMO_CLIENT_ID,
            "client_secret": SECRET,
            "redirect_uri": "https://app.example/cb",
            "token_store": str(store),
        },
    )
    said = await everything_the_proxy_says(proxy, caplog)
    assert_absent(encodings_of(SECRET) | encodings_of(REFRESH_TOKEN), *said)
