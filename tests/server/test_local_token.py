"""The local token endpoint (DESIGN 2): a client's own client_credentials token request is
answered by the proxy with a placeholder, never sent to Criteo; its credentials are
ignored. Criteo's SDKs then need no secret of their own (tests/sdk/)."""

from __future__ import annotations

import base64
import json
import logging
import re
from typing import Any

import pytest

from proxy.fakes.criteo import DEMO_CLIENT_ID, FakeCriteo
from tests.conftest import StartProxy, assert_absent, raw_request
from tests.server.conftest import assert_proxy_error

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PLACEHOLDER = re.compile(r"criteo-proxy-local-[0-9a-f]{32}")
CLIENT_SECRET = "s3cr3t-of-the-sdk-user"


def form(**fields: str) -> str:
    return "&".join(f"{name}={value}" for name, value in fields.items())


CREDENTIALS = form(
    grant_type="client_credentials", client_id="sdk-client", client_secret=CLIENT_SECRET
)


async def test_a_client_credentials_request_gets_a_placeholder_never_sent_to_criteo(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy()
    resp = await proxy.post("/oauth2/token", data=CREDENTIALS, headers=FORM)
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert list(body) == ["access_token", "token_type", "refresh_token", "expires_in"]
    assert PLACEHOLDER.fullmatch(body["access_token"])
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"] is None
    assert body["expires_in"] == 900
    again = await (await proxy.post("/oauth2/token", data=CREDENTIALS, headers=FORM)).json()
    assert again["access_token"] != body["access_token"]  # random each time
    # Nothing of it reached Criteo: its token requests are the proxy's own warm-up only.
    assert all(r.form.get("client_id") == DEMO_CLIENT_ID for r in criteo.token_requests)
    assert not [r for r in criteo.requests if r.raw_path.startswith("/oauth2")]

    # The placeholder is worthless upstream: the proxy's own token goes instead.
    api = await proxy.get(
        "/2026-07/advertisers/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert api.status == 200
    assert criteo.last_request.token in criteo.issued


async def test_credentials_in_basic_auth_are_ignored_and_never_kept(
    start_proxy: StartProxy, criteo: FakeCriteo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = await start_proxy()
    basic = base64.b64encode(f"sdk-client:{CLIENT_SECRET}".encode()).decode()
    resp = await proxy.post(
        "/oauth2/token",
        data=form(grant_type="client_credentials"),
        headers={**FORM, "Authorization": f"Basic {basic}"},
    )
    assert resp.status == 200
    history = await (await proxy.get("/_proxy/requests")).text()
    status = await (await proxy.get("/_proxy/status")).text()
    metrics = await (await proxy.get("/_proxy/metrics")).text()
    assert_absent({CLIENT_SECRET, basic}, caplog.text, history, status, metrics)


async def test_it_gets_an_access_line_and_a_console_record_without_upstream_time(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    proxy = await start_proxy()
    resp = await proxy.post("/oauth2/token", data=CREDENTIALS, headers=FORM)
    assert resp.status == 200
    (record,) = (await (await proxy.get("/_proxy/requests")).json())["requests"]
    assert record["method"] == "POST"
    assert record["path"] == "/oauth2/token"
    assert record["status"] == 200
    assert record["upstream_ms"] is None
    assert record["proxy_error"] is None
    access = [r.getMessage() for r in caplog.records if r.name == "criteo_proxy.access"]
    assert any(line.startswith("POST /oauth2/token 200") for line in access), access
    assert_absent({CLIENT_SECRET, (await resp.json())["access_token"]}, caplog.text)


async def test_a_client_id_other_than_the_profiles_is_logged_once_at_info(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    proxy = await start_proxy()
    for _ in range(3):
        await proxy.post("/oauth2/token", data=CREDENTIALS, headers=FORM)
    own = form(grant_type="client_credentials", client_id=DEMO_CLIENT_ID, client_secret="x")
    await proxy.post("/oauth2/token", data=own, headers=FORM)
    said = [r for r in caplog.records if "sdk-client" in r.getMessage()]
    assert len(said) == 1
    assert said[0].levelno == logging.INFO
    assert DEMO_CLIENT_ID in said[0].getMessage()  # whose app its calls use


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (form(grant_type="refresh_token", refresh_token="rt-1"), FORM),
        (form(grant_type="authorization_code", code="c", redirect_uri="https://a/cb"), FORM),
        (json.dumps({"grant_type": "client_credentials"}), {"Content-Type": "application/json"}),
        (CREDENTIALS, {"Content-Type": "text/plain"}),
    ],
    ids=["refresh_token", "authorization_code", "json", "not-a-form"],
)
async def test_every_other_oauth2_request_is_forwarded_as_sent(
    start_proxy: StartProxy, criteo: FakeCriteo, body: str, headers: dict[str, str]
) -> None:
    proxy = await start_proxy()
    await proxy.get("/_proxy/ready")  # the proxy's own token first
    before = len(criteo.token_requests)
    resp = await proxy.post("/oauth2/token", data=body, headers=headers)
    assert resp.status in (400, 401)  # Criteo's own answer
    assert "X-Criteo-Proxy-Error" not in resp.headers
    assert len(criteo.token_requests) == before + 1


async def test_turned_off_the_request_goes_to_criteo(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(tokens={"local_token_endpoint": False})
    resp = await proxy.post("/oauth2/token", data=CREDENTIALS, headers=FORM)
    assert resp.status == 401  # Criteo does not know sdk-client
    assert "sdk-client" in [r.form.get("client_id") for r in criteo.token_requests]


async def test_a_body_over_retry_body_limit_is_forwarded(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(retry={"body_limit": 10})
    resp = await proxy.post("/oauth2/token", data=CREDENTIALS, headers=FORM)
    assert resp.status == 401
    assert "sdk-client" in [r.form.get("client_id") for r in criteo.token_requests]


async def test_another_path_under_oauth2_is_forwarded(start_proxy: StartProxy) -> None:
    proxy = await start_proxy()
    resp = await proxy.post("/oauth2/introspect", data=CREDENTIALS, headers=FORM)
    assert resp.status == 401  # the fake's API, asked without a token: as the client sent it
    assert "X-Criteo-Proxy-Error" not in resp.headers
    assert (await resp.json())["errors"][0]["code"] == "authorization-token-invalid"


@pytest.mark.parametrize(
    ("security", "headers", "status", "code"),
    [
        ({}, {"Host": "evil.example"}, 403, "host_not_allowed"),
        ({}, {"Origin": "https://evil.example"}, 403, "origin_not_allowed"),
        ({"api_keys": ["k-1"]}, {}, 401, "proxy_key_required"),
    ],
)
async def test_the_host_origin_and_key_guards_apply(
    start_proxy: StartProxy,
    security: dict[str, Any],
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    proxy = await start_proxy(security=security)
    resp = await proxy.post("/oauth2/token", data=CREDENTIALS, headers={**FORM, **headers})
    assert resp.status == status
    assert_proxy_error(await resp.json(), code)
    if "api_keys" in security:
        keyed = await proxy.post(
            "/oauth2/token", data=CREDENTIALS, headers={**FORM, "X-Proxy-Key": "k-1"}
        )
        assert keyed.status == 200


async def test_read_only_and_path_rules_do_not_apply_nothing_goes_upstream(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy(security={"read_only": True, "deny_paths": ["^/oauth2"]})
    resp = await proxy.post("/oauth2/token", data=CREDENTIALS, headers=FORM)
    assert resp.status == 200
    # ...but what would go upstream is refused as ever.
    other = await proxy.post(
        "/oauth2/token", data=form(grant_type="refresh_token", refresh_token="rt"), headers=FORM
    )
    assert other.status == 405
    assert_proxy_error(await other.json(), "method_not_allowed")
    assert not [r for r in criteo.requests if r.raw_path.startswith("/oauth2")]


async def test_an_absolute_form_target_for_another_host_is_refused(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy()
    assert proxy.port is not None
    body = CREDENTIALS.encode()
    request = (
        "POST http://other.example/oauth2/token HTTP/1.1\r\nHost: other.example\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    answer = await raw_request(proxy.port, request)
    assert answer.status == 400
    assert answer.headers["x-criteo-proxy-error"] == "absolute_uri_not_allowed"
