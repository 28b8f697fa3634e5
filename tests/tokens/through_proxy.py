"""Shared by the token tests through a real proxy: the path, the error envelope, a recording fake.

The recording ``criteo_server`` replaces conftest's only in the modules that bind it
(``criteo_server = through_proxy.criteo_server``), not in the whole folder: the
authorization-code tests next to them keep the plain fake.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from proxy.fakes.criteo import FakeCriteo

ME = "/2026-07/advertisers/me"
ERROR_HEADER = "X-Criteo-Proxy-Error"


# --- what the fake's socket saw: every API call, the refused ones too ------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    method: str
    raw_path: str
    headers: CIMultiDict[str]
    body: bytes
    status: int


@pytest.fixture
def attempts() -> list[Attempt]:
    return []


@pytest.fixture
async def criteo_server(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    criteo: FakeCriteo,
    attempts: list[Attempt],
) -> TestServer:
    """The fake, plus a record of each API attempt with the status it got.

    ``criteo.requests`` only lists calls with a valid token; a 401 the fake
    answered itself shows up here only.
    """

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == "/oauth2/token":
            return await handler(request)
        body = await request.read()
        response = await handler(request)
        attempts.append(
            Attempt(
                request.method,
                request.raw_path,
                CIMultiDict(request.headers),
                body,
                response.status,
            )
        )
        return response

    app = criteo.build_app()
    app.middlewares.append(record)
    return await aiohttp_server(app)


def error_of(body: bytes) -> dict[str, Any]:
    envelope = json.loads(body)
    (error,) = envelope["errors"]
    return error  # type: ignore[no-any-return]
