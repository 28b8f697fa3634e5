"""Several replicas of a proxy behind a Service, one Criteo app shared on redis.yaml's
Redis (DESIGN 11): replicas, a disruption budget, spreading, the coordination section
and its password, and the proxy as configured joining that Redis for real."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import StartProxy
from tests.deploy.conftest import (
    BEHIND_SERVICE,
    PROXY_CONTAINERS,
    ProxyContainer,
    pod_labels,
    proxy_containers,
    selects,
)
from tests.deploy.redis_manifest import ManifestRedis, redis_documents, redis_volumes

IN_A_FLEET = [p for p in PROXY_CONTAINERS if p.redis_password_variable]


def replicas(proxy: ProxyContainer) -> int:
    count: int = proxy.workload["spec"]["replicas"]
    return count


@proxy_containers(BEHIND_SERVICE)
def test_a_proxy_behind_a_service_runs_several_replicas_sharing_its_app_on_redis(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    """Without coordination, replicas would each fetch tokens and guess the others'
    calls, and an authorization-code app's replicas would spend one refresh token."""
    assert replicas(proxy) >= 2
    if proxy.manifest == "shared.yaml":
        assert replicas(proxy) == 3
    assert proxy.parse(tmp_path).coordination.enabled


@proxy_containers(BEHIND_SERVICE)
def test_a_disruption_budget_lets_one_replica_go_at_a_time(proxy: ProxyContainer) -> None:
    labels = pod_labels(proxy.workload)
    (budget,) = [
        d
        for d in proxy.docs
        if d["kind"] == "PodDisruptionBudget" and selects(d["spec"]["selector"], labels)
    ]
    spec = budget["spec"]
    assert spec.get("maxUnavailable") == 1 or spec.get("minAvailable") == replicas(proxy) - 1
    # A pod that never got ready (Redis and its store both unreadable) must not block a
    # node drain forever.
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


@proxy_containers(BEHIND_SERVICE)
def test_replicas_spread_over_nodes_but_still_schedule_on_a_one_node_cluster(
    proxy: ProxyContainer,
) -> None:
    spec = proxy.spec
    labels = pod_labels(proxy.workload)
    constraints = spec.get("topologySpreadConstraints", [])
    anti_affinity = spec.get("affinity", {}).get("podAntiAffinity", {})
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti_affinity
    keys = set()
    for constraint in constraints:
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
        assert selects(constraint["labelSelector"], labels)
        keys.add(constraint["topologyKey"])
    for term in anti_affinity.get("preferredDuringSchedulingIgnoredDuringExecution", []):
        assert selects(term["podAffinityTerm"]["labelSelector"], labels)
        keys.add(term["podAffinityTerm"]["topologyKey"])
    assert "kubernetes.io/hostname" in keys


def redis_password_secret() -> tuple[str, str]:
    """(Secret, key) that redis.yaml's pod reads its password from."""
    (volume,) = [v for v in redis_volumes().values() if "secret" in v]
    (item,) = volume["secret"]["items"]
    return volume["secret"]["secretName"], item["key"]


@proxy_containers(IN_A_FLEET)
def test_the_redis_url_is_redis_yamls_service_with_the_password_of_its_secret(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    """The password only from a Secret: the same Secret and key Redis reads, put into the
    URL by ${VAR}; nothing of it is written in a manifest."""
    raw_url = yaml.safe_load(proxy.config_text)["coordination"]["redis_url"]
    url = urlsplit(raw_url)
    service = redis_documents()["Service"]
    (port,) = service["spec"]["ports"]
    assert url.scheme == "redis"
    assert url.hostname == service["metadata"]["name"]  # the Service of this namespace
    assert proxy.workload["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert url.port == port["port"]
    assert not url.username  # Redis's default user
    variable = proxy.redis_password_variable
    assert variable is not None
    ref = proxy.env[variable]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == redis_password_secret()
    config = proxy.parse(tmp_path)
    assert config.coordination.redis_url is not None
    password = urlsplit(config.coordination.redis_url.reveal()).password
    assert password == proxy.placeholder_environ()[variable]


@proxy_containers([p for p in IN_A_FLEET if p in BEHIND_SERVICE])
async def test_the_proxy_as_configured_joins_redis_yamls_redis_with_the_secrets_password(
    proxy: ProxyContainer,
    manifest_redis: ManifestRedis,
    criteo: FakeCriteo,
    criteo_url: str,
    start_proxy: StartProxy,
    tmp_path: Path,
) -> None:
    api_key = "k-" + secrets.token_hex(16)
    config = proxy.local_config(
        tmp_path, criteo=criteo, criteo_url=criteo_url, api_key=api_key, redis=manifest_redis
    )
    client = await start_proxy(config)
    headers = {"X-Proxy-Key": api_key}
    answer = await client.get("/2026-07/advertisers/me", headers=headers)
    assert answer.status == 200, await answer.text()
    status = await client.get("/_proxy/status", headers=headers)
    text = await status.text()
    (profile,) = (await status.json())["profiles"]
    assert profile["coordination"]["state"] == "up", profile["coordination"]
    assert profile["coordination"]["redis"] == f"redis://127.0.0.1:{manifest_redis.port}/0"
    assert manifest_redis.password not in text
