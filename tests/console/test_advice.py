"""``who`` and ``advice`` in the request history (DESIGN 1 and 8, issue 22 item 4).

For the person whose spreadsheet said "error": whose side each failure is on
(``request``, ``setup``, ``criteo``, ``network``) and one plain sentence on what
to do next, quoting Criteo's title (and detail while ``console.error_bodies`` is
true) and, for ``criteo`` and ``network``, whether the proxy retried.
"""

from __future__ import annotations

import socket
import time
from typing import Any, get_args

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.errors import WHO, ErrorCode
from proxy.fakes.criteo import FakeCriteo
from tests.conftest import StartProxy, raw_request

MAX_ADVICE_CHARS = 300


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def last_record(proxy: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await proxy.get("/_proxy/requests")
    assert resp.status == 200
    record: dict[str, Any] = (await resp.json())["requests"][-1]
    advice = record["advice"]
    if advice is not None:  # one plain sentence, bounded
        assert 0 < len(advice) <= MAX_ADVICE_CHARS, advice
        assert advice.isprintable(), advice
    return record


def criteo_says(status: int, title: str, detail: str, **headers: str) -> web.Response:
    error = {"traceId": "trace-adv", "type": "validation", "code": "x", "title": title}
    error["detail"] = detail
    return web.json_response({"errors": [error], "warnings": []}, status=status, headers=headers)


def test_every_proxy_error_code_has_a_side() -> None:
    assert set(WHO) == set(get_args(ErrorCode))
    assert set(WHO.values()) <= {"request", "setup", "criteo", "network"}


# --- below 400: nothing to say ----------------------------------------------------------------


async def test_who_and_advice_are_null_below_400(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/2026-07/advertisers/me"})

    criteo.handlers["/2026-07/moved"] = moved
    assert (await proxy.get("/2026-07/advertisers/me")).status == 200
    assert (await proxy.get("/2026-07/moved", allow_redirects=False)).status == 302
    records = (await (await proxy.get("/_proxy/requests")).json())["requests"]
    assert [(r["status"], r["who"], r["advice"]) for r in records] == [
        (200, None, None),
        (302, None, None),
    ]


# --- Criteo's answers ------------------------------------------------------------------------


async def test_a_criteo_400_is_the_requests_and_quotes_criteos_title_and_detail(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    async def invalid(request: web.Request) -> web.Response:
        return criteo_says(400, "Invalid dimensions", "dimension 'Hour' is not supported")

    criteo.handlers["/2026-07/statistics/report"] = invalid
    assert (await proxy.post("/2026-07/statistics/report", json={})).status == 400
    record = await last_record(proxy)
    assert record["who"] == "request"
    assert "Invalid dimensions" in record["advice"]
    assert "dimension 'Hour' is not supported" in record["advice"]


async def test_without_error_bodies_the_advice_quotes_the_title_only(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    async def invalid(request: web.Request) -> web.Response:
        return criteo_says(400, "Invalid dimensions", "advertiser 4711 of Acme Corp")

    criteo.handlers["/2026-07/statistics/report"] = invalid
    proxy = await start_proxy(console={"error_bodies": False})
    assert (await proxy.post("/2026-07/statistics/report", json={})).status == 400
    record = await last_record(proxy)
    assert record["who"] == "request"
    assert "Invalid dimensions" in record["advice"]
    assert "Acme" not in record["advice"]
    assert record["error_body"] is None


@pytest.mark.parametrize(
    ("status", "who", "words"),
    [
        (401, "setup", "token"),
        (403, "setup", "consent"),
        (404, "request", "fix the request"),
        (410, "request", "version"),
        (422, "request", "fix the request"),
    ],
)
async def test_criteos_4xx_are_setup_for_401_and_403_and_the_requests_otherwise(
    proxy: TestClient[Any, Any], criteo: FakeCriteo, status: int, who: str, words: str
) -> None:
    async def refuses(request: web.Request) -> web.Response:
        return criteo_says(status, f"Refused {status}", "because")

    criteo.handlers["/2026-07/refused"] = refuses
    assert (await proxy.get("/2026-07/refused")).status == status
    record = await last_record(proxy)
    assert (record["who"], record["proxy_error"]) == (who, None)
    assert f"Refused {status}" in record["advice"]
    assert words in record["advice"]


async def test_a_criteo_503_retried_says_so(start_proxy: StartProxy, criteo: FakeCriteo) -> None:
    criteo.planned_failures["/2026-07/advertisers/me"] = [503, 503, 503]
    proxy = await start_proxy(retry={"transient": {"attempts": 2, "max_delay": 0.5}})
    assert (await proxy.get("/2026-07/advertisers/me")).status == 503
    record = await last_record(proxy)
    assert (record["who"], record["retried"]) == ("criteo", "transient")
    assert "The service is unavailable" in record["advice"]
    assert "retried" in record["advice"]
    assert "not retried" not in record["advice"]


async def test_a_criteo_503_not_retried_says_so(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    criteo.planned_failures["/2026-07/statistics/report"] = [503]
    proxy = await start_proxy()
    assert (await proxy.post("/2026-07/statistics/report", json={})).status == 503  # POST
    record = await last_record(proxy)
    assert (record["who"], record["retried"]) == ("criteo", None)
    assert "not retried" in record["advice"]
    assert "a POST may already have been done" in record["advice"]  # why not, and what then


async def test_a_criteo_429_is_criteos_and_says_whether_it_was_retried(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    calls = 0

    async def spent(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        headers = {"x-ratelimit-limit": "250", "x-ratelimit-remaining": "0"}
        if calls == 1:  # a reset soon: replayed once after it
            headers["x-ratelimit-reset"] = f"{time.time() + 0.2:.3f}"
        return criteo_says(429, "Too many requests", "slow down", **headers)

    criteo.handlers["/2026-07/spent"] = spent
    assert (await proxy.get("/2026-07/spent")).status == 429
    record = await last_record(proxy)
    assert (record["who"], record["retried"]) == ("criteo", "429")
    assert "Too many requests" in record["advice"]
    assert "retried once" in record["advice"]


async def test_anything_on_oauth2_is_the_requests(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    # Forwarded to Criteo's token endpoint, not answered by the proxy (DESIGN 2).
    proxy = await start_proxy(tokens={"local_token_endpoint": False})
    resp = await proxy.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "wrong-9"},
    )
    assert resp.status == 401
    record = await last_record(proxy)
    assert record["who"] == "request"
    assert "invalid_client" in record["advice"]
    assert "wrong-9" not in record["advice"]


async def test_the_advice_is_bounded_one_line_and_never_holds_the_token(
    proxy: TestClient[Any, Any], criteo: FakeCriteo
) -> None:
    async def echo(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        return criteo_says(400, "T\n" * 500 + auth, auth + "\r\n" + "d" * 5000)

    criteo.handlers["/2026-07/echo-auth"] = echo
    assert (await proxy.get("/2026-07/echo-auth")).status == 400
    record = await last_record(proxy)  # bounded and printable, checked there
    for token in criteo.issued:
        assert token not in record["advice"]


# --- the proxy's own errors ------------------------------------------------------------------


async def test_a_wrong_secret_is_setup_and_says_which_variables(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(credentials={"client_secret": "wrong-secret-80"})
    assert (await proxy.get("/2026-07/advertisers/me")).status == 502
    record = await last_record(proxy)
    assert (record["who"], record["proxy_error"]) == ("setup", "token_request_failed")
    assert "CRITEO_CLIENT_SECRET" in record["advice"]
    assert "wrong-secret-80" not in record["advice"]


async def test_an_unreachable_token_endpoint_is_the_networks(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(upstream={"token_url": f"http://127.0.0.1:{closed_port()}/t"})
    assert (await proxy.get("/2026-07/advertisers/me")).status == 502
    record = await last_record(proxy)
    assert (record["who"], record["proxy_error"]) == ("network", "token_endpoint_unavailable")
    assert "not retried" in record["advice"]


async def test_a_token_endpoint_answering_503_is_criteos(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    criteo.token_failure_status = 503
    proxy = await start_proxy()
    assert (await proxy.get("/2026-07/advertisers/me")).status == 502
    record = await last_record(proxy)
    assert (record["who"], record["proxy_error"]) == ("criteo", "token_endpoint_unavailable")
    assert "503" in record["advice"]
    assert "not retried" in record["advice"]


async def test_an_unreachable_api_is_the_networks_and_says_it_was_retried(
    start_proxy: StartProxy, criteo_url: str
) -> None:
    proxy = await start_proxy(
        upstream={
            "url": f"http://127.0.0.1:{closed_port()}",
            "token_url": criteo_url + "/oauth2/token",
        },
        retry={"transient": {"attempts": 1, "max_delay": 0.3}},
    )
    assert (await proxy.get("/2026-07/advertisers/me")).status == 502
    record = await last_record(proxy)
    assert (record["who"], record["proxy_error"]) == ("network", "upstream_unavailable")
    assert record["retried"] == "transient"
    assert "retried" in record["advice"]
    assert "not retried" not in record["advice"]


@pytest.mark.parametrize(
    ("sections", "request_bytes", "code", "who", "words"),
    [
        (
            {},
            b"GET /x HTTP/1.1\r\nHost: evil.example\r\n\r\n",
            "host_not_allowed",
            "setup",
            "security.allowed_hosts",
        ),
        (
            {},
            b"GET http://other.example/x HTTP/1.1\r\nHost: other.example\r\n\r\n",
            "absolute_uri_not_allowed",
            "request",
            "plain path",
        ),
        (
            {"security": {"read_only": True}},
            b"DELETE /2026-07/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "method_not_allowed",
            "setup",
            "read_only",
        ),
        (
            {"security": {"api_keys": ["k-adv-1"]}},
            b"GET /2026-07/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "proxy_key_required",
            "setup",
            "X-Proxy-Key",
        ),
        (
            {},
            b"GET /_proxy/requests?after=x HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "bad_request",
            "request",
            "after",
        ),
    ],
    ids=["host", "absolute", "read-only", "key", "bad-request"],
)
async def test_the_proxys_refusals_say_whose_side_and_what_to_change(
    start_proxy: StartProxy,
    sections: dict[str, Any],
    request_bytes: bytes,
    code: str,
    who: str,
    words: str,
) -> None:
    proxy = await start_proxy(**sections)
    refused = await raw_request(proxy.port, request_bytes)
    assert refused.headers["x-criteo-proxy-error"] == code
    headers = {"X-Proxy-Key": "k-adv-1"}
    resp = await proxy.get("/_proxy/requests", headers=headers)
    record = (await resp.json())["requests"][-1]
    assert (record["proxy_error"], record["who"]) == (code, who)
    assert words in record["advice"]
    assert len(record["advice"]) <= MAX_ADVICE_CHARS
    assert "k-adv-1" not in record["advice"]


async def test_a_spent_rate_limit_window_is_criteos_and_was_not_sent(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    criteo.rate_limit, criteo.rate_window_start = 1, time.time()  # a window a minute long
    proxy = await start_proxy(rate_limit={"max_wait": 0.1})
    assert (await proxy.get("/2026-07/advertisers/me")).status == 200
    assert (await proxy.get("/2026-07/advertisers/me")).status == 429
    record = await last_record(proxy)
    assert (record["who"], record["proxy_error"]) == ("criteo", "rate_limited")
    assert "rate_limit.max_wait" in record["advice"]
