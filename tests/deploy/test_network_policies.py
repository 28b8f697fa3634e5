"""The proxies' egress (issue 20): a pod that holds a Criteo token and a client secret
reaches DNS, Criteo and its Redis, and nothing else: not the cloud's metadata service,
not the cluster's other services. The sidecar is left out: its policy would be the ETL
pod's, which is yours to write."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.deploy.conftest import (
    PROXY_CONTAINERS,
    ProxyContainer,
    pod_labels,
    proxy_containers,
    selects,
)
from tests.deploy.redis_manifest import redis_documents

# Where a pod may not go by the public-address rule: private, shared (carrier-grade NAT),
# link-local (the metadata service at 169.254.169.254) and loopback ranges.
NOT_PUBLIC_V4 = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"}
NOT_PUBLIC_V6 = {"fc00::/7", "fe80::/10"}
KUBE_DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}

IN_A_NAMESPACE = [p for p in PROXY_CONTAINERS if p.workload["metadata"].get("namespace")]


def policies_of(proxy: ProxyContainer, policy_type: str) -> list[dict[str, Any]]:
    """The NetworkPolicies of the proxy's file that select its pods for POLICY_TYPE."""
    labels = pod_labels(proxy.workload)
    return [
        d
        for d in proxy.docs
        if d["kind"] == "NetworkPolicy"
        and d["metadata"]["namespace"] == proxy.workload["metadata"]["namespace"]
        and selects(d["spec"]["podSelector"], labels)
        and policy_type in d["spec"]["policyTypes"]
    ]


def destination(peer: dict[str, Any], ports: set[tuple[Any, str]]) -> str:
    """What one egress peer is, checked for the ports it is allowed."""
    if peer == KUBE_DNS:
        assert ports == {(53, "UDP"), (53, "TCP")}
        return "dns"
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        network = ipaddress.ip_network(block["cidr"])
        excepted = set(block.get("except", []))
        if network.prefixlen == 0:  # "anywhere" minus every range that is not public
            assert excepted >= (NOT_PUBLIC_V4 if network.version == 4 else NOT_PUBLIC_V6)
        else:
            assert network.is_global, block
        assert ports == {(443, "TCP")}
        return "criteo"
    assert set(peer) == {"podSelector"}, peer  # this namespace's pods only
    assert selects(peer["podSelector"], pod_labels(redis_documents()["StatefulSet"]))
    assert ports == {(6379, "TCP")}
    return "redis"


@proxy_containers(IN_A_NAMESPACE)
def test_the_proxy_reaches_dns_criteo_and_its_redis_only(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    config = proxy.parse(tmp_path)
    policies = policies_of(proxy, "Egress")
    assert policies
    reached = set()
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            # A rule without `to` goes anywhere, one without `ports` on any port.
            assert rule.get("to"), rule
            assert rule.get("ports"), rule
            ports = {(port["port"], port["protocol"]) for port in rule["ports"]}
            reached |= {destination(peer, ports) for peer in rule["to"]}
    expected = {"dns", "criteo"} | ({"redis"} if config.coordination.enabled else set())
    assert reached == expected
    upstream = urlsplit(config.upstream.url)
    assert (upstream.scheme, upstream.port or 443) == ("https", 443)


@proxy_containers([p for p in IN_A_NAMESPACE if not p.services()])
def test_a_pod_without_a_service_admits_nothing(proxy: ProxyContainer) -> None:
    """authorize.yaml's pod is reached by `kubectl exec` alone, which is no network."""
    policies = policies_of(proxy, "Ingress")
    assert policies
    assert all(not policy["spec"].get("ingress") for policy in policies)
