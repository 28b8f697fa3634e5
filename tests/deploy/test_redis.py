"""redis.yaml: the Redis the proxies share an app on (DESIGN 11). Its password only from
a Secret's file, append-only persistence on a claim, probes that keep the password off
command lines, a NetworkPolicy that admits the proxies only; and all of it run for real
with Debian's redis-server standing in for Valkey."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
import redis.exceptions

from tests.deploy.conftest import PROXY_CONTAINERS, pod_labels, pod_spec, probes
from tests.deploy.redis_manifest import (
    ManifestRedis,
    redis_container,
    redis_documents,
    redis_volumes,
    require_redis_binaries,
)

REDIS_PORT = 6379


def config_directives() -> dict[str, str]:
    """valkey.conf's directives (name -> the rest of the line)."""
    text = redis_documents()["ConfigMap"]["data"]["valkey.conf"]
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return {pair[0]: (pair[1] if len(pair) > 1 else "") for pair in pairs}


# --- what the manifest says ------------------------------------------------------------


def test_one_replica_with_its_append_only_file_on_a_claim_of_its_own() -> None:
    statefulset = redis_documents()["StatefulSet"]
    assert statefulset["spec"]["replicas"] == 1
    directives = config_directives()
    assert directives["appendonly"] == "yes"
    assert directives["appendfsync"] == "always"  # a rotated refresh token is on disk first
    assert directives["maxmemory-policy"] == "noeviction"  # never evict a refresh token
    (template,) = statefulset["spec"]["volumeClaimTemplates"]
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
    (data,) = [m for m in redis_container()["volumeMounts"] if m["name"] == "data"]
    assert data["mountPath"] == directives["dir"]
    assert template["metadata"]["name"] == data["name"]


def test_the_password_is_only_in_a_secret_mounted_as_a_file() -> None:
    container = redis_container()
    assert "env" not in container  # not in /proc/1/environ
    assert "envFrom" not in container
    assert "requirepass" not in config_directives()
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    secrets_mounted = [v for v in redis_volumes().values() if "secret" in v]
    (volume,) = secrets_mounted
    assert mounts[volume["name"]]["readOnly"] is True
    assert volume["secret"]["secretName"] == "criteo-proxy-redis"
    assert [item["key"] for item in volume["secret"]["items"]] == ["password"]
    assert not volume["secret"]["defaultMode"] & 0o007
    # The command lines name the file, never a password (no -a, no --requirepass).
    commands = [container["command"], *(p["exec"]["command"] for p in probes(container).values())]
    for command in commands:
        assert not {"-a", "--requirepass", "--pass"} & set(" ".join(command).split())


def test_it_runs_unprivileged_read_only_within_bounds() -> None:
    statefulset = redis_documents()["StatefulSet"]
    spec = pod_spec(statefulset)
    container = redis_container()
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] != 0
    assert context["readOnlyRootFilesystem"] is True
    assert spec["automountServiceAccountToken"] is False
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    # Writable: the claim, and the memory-backed emptyDir where start.sh writes its config.
    volumes = redis_volumes()
    writable = {
        m["mountPath"]: volumes[m["name"]]
        for m in container["volumeMounts"]
        if not m.get("readOnly")
    }
    assert sorted(writable) == ["/data", "/run/valkey"]
    assert writable["/run/valkey"]["emptyDir"]["medium"] == "Memory"
    assert set(probes(container)) == {"startupProbe", "livenessProbe", "readinessProbe"}


def test_the_service_reaches_the_pods_port() -> None:
    docs = redis_documents()
    service, statefulset = docs["Service"], docs["StatefulSet"]
    assert service["spec"]["selector"].items() <= pod_labels(statefulset).items()
    (port,) = service["spec"]["ports"]
    (container_port,) = redis_container()["ports"]
    assert port["port"] == container_port["containerPort"] == REDIS_PORT
    assert port["targetPort"] == container_port["name"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions In/NotIn) selects LABELS."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "NotIn" and value in expression["values"]:
            return False
        assert expression["operator"] in ("In", "NotIn")
    return True


def test_the_network_policy_admits_the_proxies_pods_only_and_redis_reaches_nothing() -> None:
    docs = redis_documents()
    policy = docs["NetworkPolicy"]
    assert selects(policy["spec"]["podSelector"], pod_labels(docs["StatefulSet"]))
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["spec"]["egress"] == []
    (rule,) = policy["spec"]["ingress"]
    assert [(p["port"], p["protocol"]) for p in rule["ports"]] == [("redis", "TCP")]
    for peer in rule["from"]:
        assert set(peer) == {"podSelector"}  # no ipBlock, no bare namespaceSelector
        assert peer["podSelector"]  # {} would admit every pod
    fleet = [p for p in PROXY_CONTAINERS if "coordination" in p.config_text]
    assert fleet
    namespace = policy["metadata"]["namespace"]
    admitted = {
        p.id
        for p in PROXY_CONTAINERS
        if p.workload["metadata"].get("namespace") == namespace
        and any(selects(peer["podSelector"], pod_labels(p.workload)) for peer in rule["from"])
    }
    assert admitted == {p.id for p in fleet}
    redis_pods = pod_labels(docs["StatefulSet"])
    assert not any(selects(peer["podSelector"], redis_pods) for peer in rule["from"])


# --- run for real ------------------------------------------------------------------------


async def test_it_asks_for_the_secrets_password_and_keeps_every_write_on_disk(
    manifest_redis: ManifestRedis,
) -> None:
    anonymous = redis_asyncio.Redis(host="127.0.0.1", port=manifest_redis.port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        await anonymous.ping()
    await anonymous.aclose()

    client = redis_asyncio.Redis.from_url(manifest_redis.url)
    try:
        assert await client.ping() is True
        config = await client.config_get("*")
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "always"
        assert config["maxmemory-policy"] == "noeviction"
        data = manifest_redis.path("/data")
        assert Path(config["dir"]).resolve() == data.resolve()
        await client.set("criteo-proxy:deploy-test", "kept")
    finally:
        await client.aclose()
    append_only = b"".join(p.read_bytes() for p in (data / "appendonlydir").glob("*.aof"))
    assert b"criteo-proxy:deploy-test" in append_only


async def test_the_password_is_on_no_command_line_nor_in_the_environment(
    manifest_redis: ManifestRedis,
) -> None:
    assert manifest_redis.process is not None
    proc = Path("/proc") / str(manifest_redis.process.pid)
    password = manifest_redis.password.encode()
    assert password not in (proc / "cmdline").read_bytes()  # exec'd: the server's own
    assert password not in (proc / "environ").read_bytes()
    # The config start.sh wrote holds it, readable by the server's user alone.
    written = manifest_redis.path("/run/valkey") / "valkey.conf"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert password.decode() in written.read_text(encoding="utf-8")
    assert password.decode() not in "".join(manifest_redis.output)


async def run_probe(manifest_redis: ManifestRedis, probe: dict[str, Any]) -> int:
    command = [manifest_redis.local(part) for part in probe["exec"]["command"]]
    command = [part.replace(f"-p {REDIS_PORT}", f"-p {manifest_redis.port}") for part in command]
    process = await asyncio.create_subprocess_exec(
        *command,
        env=manifest_redis.env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), probe["timeoutSeconds"] + 5)


async def test_the_probes_pass_with_the_secrets_password_and_fail_with_another(
    manifest_redis: ManifestRedis,
) -> None:
    found = probes(redis_container())
    for kind, probe in found.items():
        assert await run_probe(manifest_redis, probe) == 0, kind
    password_file = manifest_redis.path("/var/run/secrets/criteo-proxy-redis/password")
    password_file.write_text("not" + manifest_redis.password, encoding="utf-8")
    for kind, probe in found.items():
        assert await run_probe(manifest_redis, probe) != 0, kind


@pytest.mark.parametrize(
    "password",
    ["", "with space", 'quote"d', "percent%40", "line\nrequirepass x", "final-newline\n"],
    ids=["empty", "space", "quote", "percent", "two-lines", "final-newline"],
)
async def test_a_password_that_would_not_stand_in_a_url_as_it_is_is_refused_at_start(
    tmp_path: Path, password: str
) -> None:
    require_redis_binaries()
    server = ManifestRedis(tmp_path / "redis-container")
    server.write_files(password_file_text=password)
    status, output = await server.run_to_exit()
    assert status == 1
    assert output.count("\n") == 1, output
    assert "letters and digits" in output
    assert "openssl rand -hex 32" in output
    assert not (server.path("/run/valkey") / "valkey.conf").exists()
    if password.strip():
        assert password.strip() not in output
