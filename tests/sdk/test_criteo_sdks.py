"""Criteo's own Python SDKs, from PyPI, work through the proxy with dummy credentials.

They fetch their own token from ``host + /oauth2/token`` before their calls; the
proxy answers that itself (DESIGN 2, the local token endpoint), so the app's secret
lives in one place, the proxy, and a new SDK client works while Criteo's token
endpoint is down. Both SDKs are in the ``dev`` extra; a test whose SDK is missing
skips, saying what to install.
"""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from proxy.fakes.criteo import DEMO_CLIENT_ID, LIVE_API_VERSION, FakeCriteo
from tests.conftest import StartProxy

# The SDKs' token code calls datetime.utcnow(), deprecated from Python 3.12: theirs, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")

# The SDKs are published per API version: the live one, as the README's examples use.
SDK_VERSION = LIVE_API_VERSION.replace("-", "_")  # criteo_api_..._v2026_07
PIP_VERSION = LIVE_API_VERSION.replace("-0", ".").replace("-", ".")  # 2026.7
DUMMY_ID = "any-client-id"
DUMMY_SECRET = "not-the-real-secret"


def sdk(package: str, distribution: str) -> ModuleType:
    try:
        return importlib.import_module(f"{package}_v{SDK_VERSION}")
    except ImportError:
        pytest.skip(f"pip install '{distribution}=={PIP_VERSION}.*' (Criteo's SDK)")


def list_advertisers(proxy_url: str) -> Any:
    """What a Marketing Solutions user writes, but with host= the proxy."""
    ms = sdk("criteo_api_marketingsolutions", "criteo-api-marketingsolutions-sdk")
    advertiser_api = importlib.import_module(f"{ms.__name__}.api.advertiser_api")
    client = ms.ApiClientBuilder.WithClientCredentials(DUMMY_ID, DUMMY_SECRET, host=proxy_url)
    return advertiser_api.AdvertiserApi(client).list_advertisers()


def list_retail_accounts(proxy_url: str) -> Any:
    rm = sdk("criteo_api_retailmedia", "criteo-api-retailmedia-sdk")
    accounts_api = importlib.import_module(f"{rm.__name__}.api.accounts_api")
    client = rm.ApiClientBuilder.WithClientCredentials(DUMMY_ID, DUMMY_SECRET, host=proxy_url)
    return accounts_api.AccountsApi(client).get_accounts()


def url_of(proxy: TestClient[Any, Any]) -> str:
    return str(proxy.make_url("")).rstrip("/")


async def test_the_marketing_solutions_sdk_lists_advertisers_with_dummy_credentials(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy()
    response = await asyncio.to_thread(list_advertisers, url_of(proxy))
    assert [a.attributes.advertiser_name for a in response.data] == ["Demo advertiser"]
    # Criteo saw the proxy's app only: never the SDK's dummy credentials.
    assert {r.form.get("client_id") for r in criteo.token_requests} == {DEMO_CLIENT_ID}
    (call,) = [r for r in criteo.requests if r.raw_path == f"/{LIVE_API_VERSION}/advertisers/me"]
    assert call.token in criteo.issued
    assert DUMMY_SECRET not in str(call.headers)


async def test_the_retail_media_sdk_lists_accounts_with_dummy_credentials(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy()
    response = await asyncio.to_thread(list_retail_accounts, url_of(proxy))
    assert [a.attributes.name for a in response.data] == ["Demo retail account"]
    assert {r.form.get("client_id") for r in criteo.token_requests} == {DEMO_CLIENT_ID}


async def test_a_new_sdk_client_works_while_criteos_token_endpoint_is_down(
    start_proxy: StartProxy, criteo: FakeCriteo
) -> None:
    proxy = await start_proxy()
    assert (await proxy.get("/_proxy/ready")).status == 200  # the proxy holds a valid token
    criteo.token_failure_status = 503  # from now on, Criteo's token endpoint fails
    before = len(criteo.token_requests)
    response = await asyncio.to_thread(list_advertisers, url_of(proxy))
    assert response.data[0].attributes.advertiser_name == "Demo advertiser"
    assert len(criteo.token_requests) == before  # nobody needed Criteo's token endpoint
