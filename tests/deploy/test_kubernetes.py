"""The Kubernetes manifests in deploy/kubernetes/: schemas, embedded configs, probes, Service.

Each is checked against what it must agree with, so that none drifts unseen:
Kubernetes' own schemas (kubernetes-validate, strict, shipped in the package, no
network), the proxy's config loader, the Dockerfile and the reserved paths of
DESIGN 1. The probes are also run for real, against the fake Criteo on loopback.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Mapping
from contextlib import AsyncExitStack
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from proxy.config.loader import parse_config
from proxy.config.schema import CLIENT_ID_ENV_VAR
from proxy.fakes.criteo import DEMO_CLIENT_ID, FakeCriteo
from proxy.server.app import build_app
from tests.conftest import StartProxy, clean_env
from tests.deploy.conftest import (
    BEHIND_SERVICE,
    HEALTH_PATH,
    IMAGE,
    KUBERNETES_DIR,
    MANIFEST_KINDS,
    PLACEHOLDER_API_KEY,
    PROXY_CONTAINERS,
    READY_PATH,
    SERVING,
    WITH_TOKEN_STORE,
    ProxyContainer,
    all_containers,
    all_documents,
    load_manifest,
    pod_labels,
    pod_spec,
    probe_url,
    probes,
    proxy_containers,
    with_api_keys_file,
    with_token_store,
    workloads,
)
from tests.deploy.redis_manifest import started_manifest_redis

# The oldest Kubernetes minor still supported upstream when these were written (1.35-1.37,
# December 2026). The manifests need 1.34 at least: native sidecars (GA 1.33) and the
# preStop sleep action (GA 1.34).
KUBERNETES_VERSION = "1.35.0"

# Proxies with inbound keys: they read them from a file (security.api_keys_file).
WITH_API_KEYS = [p for p in PROXY_CONTAINERS if p.api_keys_file]


# --- 1. Kubernetes' own schemas ---------------------------------------------------------


def test_the_manifest_table_lists_every_file_in_deploy_kubernetes() -> None:
    assert sorted(p.name for p in KUBERNETES_DIR.glob("*.y*ml")) == sorted(MANIFEST_KINDS)


@pytest.mark.parametrize("name", MANIFEST_KINDS)
def test_every_manifest_validates_against_kubernetes_schemas_in_strict_mode(name: str) -> None:
    docs = load_manifest(name)
    assert [doc["kind"] for doc in docs] == MANIFEST_KINDS[name]
    for doc in docs:
        validated = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert validated == KUBERNETES_VERSION.rsplit(".", 1)[0]


def test_strict_validation_rejects_a_misspelt_field_so_the_check_above_is_not_empty() -> None:
    (deployment,) = [d for d in load_manifest("shared.yaml") if d["kind"] == "Deployment"]
    container = pod_spec(deployment)["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# --- 3. the embedded config.yaml: the proxy's own loader accepts it ---------------------


@proxy_containers()
def test_the_embedded_config_is_accepted_by_the_proxys_loader_with_the_containers_env(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    # Only the container's own variables exist: a ${VAR} it does not define is an error.
    config = proxy.parse(tmp_path)
    assert config.logging.format == "json"  # both streams end in one log pipeline (DESIGN 5)
    assert config.credentials.client_id == proxy.placeholder_environ()[CLIENT_ID_ENV_VAR]
    assert proxy.env[CLIENT_ID_ENV_VAR]["valueFrom"]["secretKeyRef"]["key"] == "client_id"
    # Neither the secret nor the API keys are written in the manifest: both are files.
    raw = yaml.safe_load(proxy.config_text)
    assert "client_secret" not in raw["credentials"]
    assert "api_keys" not in (raw.get("security") or {})
    keys = [key.reveal() for key in config.security.api_keys]
    assert keys == ([PLACEHOLDER_API_KEY] if proxy.api_keys_file else [])


def mounted_secret_key(proxy: ProxyContainer, path: str) -> tuple[str, str]:
    """(Secret, key) of the file at PATH in the container: mounted read-only, readable by
    the proxy's user and by nobody else's writes."""
    mount, volume = proxy.mount_of(path)
    assert mount["readOnly"] is True
    items = {item["path"]: item["key"] for item in volume["secret"]["items"]}
    relative = str(PurePosixPath(path).relative_to(mount["mountPath"]))
    # The files are root's: the proxy's user reads them through its group (fsGroup).
    mode = volume["secret"]["defaultMode"]
    assert (mode & 0o040 and proxy.spec["securityContext"]["fsGroup"] == IMAGE.gid) or (
        mode & 0o004
    )
    assert not mode & 0o002
    return volume["secret"]["secretName"], items[relative]


@proxy_containers()
def test_the_client_secret_file_is_a_key_of_the_mounted_secret(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    secret_file = proxy.parse(tmp_path).credentials.client_secret_file
    assert secret_file is not None
    assert "CRITEO_CLIENT_SECRET" not in proxy.env  # it would win over the file
    assert mounted_secret_key(proxy, secret_file)[1] == "client_secret"


@proxy_containers(WITH_API_KEYS)
def test_the_api_keys_file_is_a_key_of_a_mounted_secret_of_its_own(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    """Issue 20: a key in an environment variable is readable from /proc/1/environ by
    anyone who can exec into the pod; a mounted file is not in the environment."""
    assert proxy.api_keys_file is not None
    secret, key = mounted_secret_key(proxy, proxy.api_keys_file)
    assert key == "key"
    # The clients get a copy of the keys' Secret: it must not be the client secret's.
    secret_file = proxy.parse(tmp_path).credentials.client_secret_file
    assert secret_file is not None
    assert secret != mounted_secret_key(proxy, secret_file)[0]


def api_key_secrets() -> set[tuple[str, str]]:
    """(Secret, key) pairs mounted as a proxy's security.api_keys_file."""
    found = set()
    for proxy in WITH_API_KEYS:
        assert proxy.api_keys_file is not None
        mount, volume = proxy.mount_of(proxy.api_keys_file)
        relative = str(PurePosixPath(proxy.api_keys_file).relative_to(mount["mountPath"]))
        for item in volume["secret"]["items"]:
            if item["path"] == relative:
                found.add((volume["secret"]["secretName"], item["key"]))
    return found


@pytest.mark.parametrize(
    "workload",
    workloads(),
    ids=lambda d: f"{d['kind']}:{d['metadata']['name']}",
)
def test_no_container_has_an_api_key_in_its_environment(workload: dict[str, Any]) -> None:
    keys = api_key_secrets()
    assert keys
    key_secrets = {secret for secret, _ in keys}
    for container in all_containers(pod_spec(workload)):
        for item in container.get("env", []):
            assert "API_KEY" not in item["name"].upper(), (container["name"], item["name"])
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert (ref["name"], ref["key"]) not in keys, (container["name"], item["name"])
        for source in container.get("envFrom", []):
            assert source.get("secretRef", {}).get("name") not in key_secrets


@proxy_containers(WITH_API_KEYS)
def test_the_loader_reads_the_api_keys_file_the_manifests_mount(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    """Every line of the mounted file is a key: the second one during a rotation."""
    raw = with_api_keys_file(yaml.safe_load(proxy.config_text), tmp_path, ["key-now", "key-next"])
    config = parse_config(raw, environ=proxy.placeholder_environ(), require_credentials=False)
    assert [key.reveal() for key in config.security.api_keys] == ["key-now", "key-next"]


@proxy_containers(SERVING)
def test_a_proxy_behind_a_service_needs_keys_and_a_sidecar_listens_on_loopback_only(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    config = proxy.parse(tmp_path)
    if proxy.services():
        assert config.listen.host == "0.0.0.0"
        assert config.security.api_keys
        assert proxy.api_keys_file is not None  # from a mounted Secret, checked above
    else:
        assert config.listen.host == "127.0.0.1"
        assert "ports" not in proxy.container
        assert not proxy.spec.get("hostNetwork")


@proxy_containers(SERVING)
def test_allowed_hosts_name_the_service_in_every_dns_form_and_loopback_for_the_probes(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    allowed = set(proxy.parse(tmp_path).security.allowed_hosts)
    for probe in probes(proxy.container).values():
        assert urlsplit(probe_url(probe)).hostname in allowed
    for service in proxy.services():
        name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
        base = f"{name}.{namespace}"
        assert {name, base, f"{base}.svc", f"{base}.svc.cluster.local"} <= allowed


@proxy_containers(SERVING)
def test_kubernetes_waits_long_enough_for_in_flight_requests_after_sigterm(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    config = proxy.parse(tmp_path)
    pre_stop = proxy.container.get("lifecycle", {}).get("preStop", {})
    pre_stop_seconds = pre_stop.get("sleep", {}).get("seconds", 0)
    if proxy.services():  # the endpoints must drop the pod before it stops accepting
        assert pre_stop_seconds > 0
    grace = proxy.spec["terminationGracePeriodSeconds"]
    assert grace >= pre_stop_seconds + config.listen.shutdown_grace + 5


@proxy_containers()
def test_every_writable_path_is_an_empty_dir_or_the_token_stores_claim(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    config = proxy.parse(tmp_path)
    tmp_mount, tmp_volume = proxy.mount_of("/tmp")
    assert tmp_mount["mountPath"] == "/tmp"
    assert "emptyDir" in tmp_volume
    writable = []
    for mount, volume in proxy.mounts():
        if "configMap" in volume or "secret" in volume:
            assert mount["readOnly"] is True, mount["name"]
        else:
            assert "emptyDir" in volume or "persistentVolumeClaim" in volume, mount["name"]
            writable.append(mount["mountPath"])
    if config.credentials.grant_type == "authorization_code":
        store_dir = str(PurePosixPath(config.credentials.token_store).parent)
        mount, volume = proxy.mount_of(config.credentials.token_store)
        # The whole directory, not a file: the store is replaced by a rename in it.
        assert mount["mountPath"] == store_dir
        # A serving pod's own claim; authorize's copy is thrown away (Redis keeps it).
        kind = "emptyDir" if proxy.workload["kind"] == "Pod" else "persistentVolumeClaim"
        assert kind in volume
        assert store_dir.startswith(IMAGE.home + "/")
        assert sorted(writable) == sorted(["/tmp", store_dir])
    else:
        assert writable == ["/tmp"]


@proxy_containers(WITH_TOKEN_STORE)
def test_each_replica_has_a_store_of_its_own_shared_through_redis_and_unchanged_by_fs_group(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    """DESIGN 11: with coordination the refresh token rotates under the fleet's lock and
    lives in Redis and in each member's file, so replicas are safe; one store file shared
    by two processes never is (they would rotate it apart)."""
    assert proxy.parse(tmp_path).coordination.enabled
    if proxy.workload["kind"] == "StatefulSet":
        spec = proxy.workload["spec"]
        assert spec["replicas"] >= 2
        # Each pod its own claim from the template, kept when the set shrinks or goes:
        # a second copy of the refresh token beside Redis's.
        (template,) = spec["volumeClaimTemplates"]
        assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert spec["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": "Retain",
            "whenScaled": "Retain",
        }
        assert spec["podManagementPolicy"] == "Parallel"  # no pod waits for another
    assert proxy.workload["kind"] in ("StatefulSet", "Pod")  # never a shared claim
    # fsGroup's default (Always) would chmod g+rw every file at each mount: a 0660
    # store, which the proxy refuses at start.
    assert proxy.spec["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert not [d for _, d in all_documents() if d["kind"] == "PersistentVolumeClaim"]


def test_the_authorize_pod_and_the_serving_pods_share_config_secrets_and_redis(
    tmp_path: Path,
) -> None:
    """`authorize` writes the new refresh token to Redis (DESIGN 11), where the serving
    pods take it; its own store file is a throwaway emptyDir."""
    (authorize,) = [p for p in PROXY_CONTAINERS if p.manifest == "authorize.yaml"]
    (serving,) = [p for p in SERVING if p.manifest == "authorization-code.yaml"]
    assert authorize.config_text == serving.config_text
    assert authorize.parse(tmp_path).coordination.enabled
    store_dir = str(PurePosixPath(authorize.parse(tmp_path).credentials.token_store).parent)

    def sources(proxy: ProxyContainer) -> dict[str, Any]:
        return {
            mount["mountPath"]: {k: v for k, v in volume.items() if k != "name"}
            for mount, volume in proxy.mounts()
            if mount["mountPath"] != store_dir
        }

    assert sources(authorize) == sources(serving)
    assert authorize.env == serving.env


# --- 4. probes: the DESIGN's reserved paths, and they work ------------------------------


@proxy_containers(SERVING)
def test_liveness_is_health_and_readiness_is_ready_the_reserved_paths(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    found = probes(proxy.container)
    assert urlsplit(probe_url(found["livenessProbe"])).path == HEALTH_PATH
    assert urlsplit(probe_url(found["readinessProbe"])).path == READY_PATH
    if "startupProbe" in found:
        assert urlsplit(probe_url(found["startupProbe"])).path == HEALTH_PATH
    # They are the proxy's own GET routes, never forwarded to Criteo.
    config = proxy.parse(tmp_path, **{CLIENT_ID_ENV_VAR: DEMO_CLIENT_ID})
    if config.credentials.grant_type == "authorization_code":
        config = with_token_store(config, tmp_path, FakeCriteo())
    routes = {
        (route.method, route.resource.canonical)
        for route in build_app(config).router.routes()
        if route.resource is not None
    }
    assert {("GET", HEALTH_PATH), ("GET", READY_PATH)} <= routes


def test_every_probe_runs_the_same_script() -> None:
    # The interpreter, its flags and the script; the arguments (a keys file, the URL) vary.
    scripts = {
        tuple(probe["exec"]["command"][:4])
        for proxy in SERVING
        for probe in probes(proxy.container).values()
    }
    assert len(scripts) == 1


@proxy_containers(SERVING)
def test_only_the_readiness_probe_names_a_keys_file_and_it_is_the_configs(
    proxy: ProxyContainer,
) -> None:
    """/_proxy/health needs no key (DESIGN 4): its probes must not carry one."""
    for kind, probe in probes(proxy.container).items():
        arguments = probe["exec"]["command"][4:-1]
        if kind == "readinessProbe" and proxy.api_keys_file:
            assert arguments == [proxy.api_keys_file], kind
        else:
            assert arguments == [], kind


async def run_probe(
    probe: dict[str, Any],
    port: int,
    env: dict[str, str],
    files: Mapping[str, Path] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """The probe's command as the kubelet runs it in the container, aimed at PORT, with
    the container's files (paths) replaced by FILES."""
    command = probe["exec"]["command"]
    url = urlsplit(command[-1])._replace(netloc=f"127.0.0.1:{port}").geturl()
    arguments = [str((files or {}).get(argument, argument)) for argument in command[1:-1]]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *arguments,
        url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), probe["timeoutSeconds"] + 5)
    assert process.returncode is not None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.parametrize("token_endpoint", ["up", "refusing"])
@proxy_containers(SERVING)
async def test_the_probes_pass_against_the_proxy_the_manifest_configures(
    proxy: ProxyContainer,
    token_endpoint: str,
    criteo: FakeCriteo,
    criteo_url: str,
    start_proxy: StartProxy,
    tmp_path: Path,
) -> None:
    """Its Host guard, its API keys and its port, as the manifest sets them.

    Liveness holds whatever Criteo does; readiness fails while no token can be had.
    """
    api_key = "k-" + secrets.token_hex(16)
    async with AsyncExitStack() as stack:
        redis = None
        if proxy.redis_password_variable:  # redis.yaml's, for real
            redis = await stack.enter_async_context(started_manifest_redis(tmp_path / "redis"))
        config = proxy.local_config(
            tmp_path, criteo=criteo, criteo_url=criteo_url, api_key=api_key, redis=redis
        )
        if token_endpoint == "refusing":
            criteo.token_failure_status = 401
        client = await start_proxy(config)
        await run_the_probes(proxy, client.port, api_key, token_endpoint, tmp_path)
        await client.close()  # before its Redis stops


async def run_the_probes(
    proxy: ProxyContainer, port: int | None, api_key: str, token_endpoint: str, tmp_path: Path
) -> None:
    assert port is not None
    probe_env = clean_env()  # the container's environment holds no key
    keys_file = tmp_path / "mounted-keys"
    keys_file.write_text(api_key + "\n", encoding="utf-8")
    files = {proxy.api_keys_file: keys_file} if proxy.api_keys_file else {}

    for kind, probe in probes(proxy.container).items():
        result = await run_probe(probe, port, probe_env, files)
        expected = 1 if (kind == "readinessProbe" and token_endpoint == "refusing") else 0
        assert result.returncode == expected, (kind, result.stderr.decode())

    if proxy.api_keys_file:  # readiness needs the key, liveness does not (DESIGN 4)
        wrong_file = tmp_path / "wrong-keys"
        wrong_file.write_text("not-the-key\n", encoding="utf-8")
        wrong = {proxy.api_keys_file: wrong_file}
        found = probes(proxy.container)
        assert (await run_probe(found["readinessProbe"], port, probe_env, wrong)).returncode == 1
        assert (await run_probe(found["livenessProbe"], port, probe_env, wrong)).returncode == 0


@proxy_containers(SERVING)
async def test_the_probes_send_the_files_first_key_to_ready_and_no_key_to_health(
    proxy: ProxyContainer, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """What each probe sends, seen by a server of our own on loopback; the container's
    environment holds no key at all."""
    received: list[tuple[str, str | None]] = []

    async def record(request: web.Request) -> web.Response:
        received.append((request.path, request.headers.get("X-Proxy-Key")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get(HEALTH_PATH, record)
    app.router.add_get(READY_PATH, record)
    server = await aiohttp_server(app)
    keys_file = tmp_path / "mounted-keys"
    keys_file.write_text("\n  key-now  \nkey-next\n", encoding="utf-8")  # blank, spaces
    files = {proxy.api_keys_file: keys_file} if proxy.api_keys_file else {}
    for kind, probe in probes(proxy.container).items():
        result = await run_probe(probe, server.port, clean_env(), files)
        assert result.returncode == 0, (kind, result.stderr.decode())
    expected = [
        (urlsplit(probe_url(probe)).path, None)
        if urlsplit(probe_url(probe)).path == HEALTH_PATH or not proxy.api_keys_file
        else (READY_PATH, "key-now")
        for probe in probes(proxy.container).values()
    ]
    assert received == expected


# --- 5. Service and NetworkPolicy -------------------------------------------------------


@proxy_containers(BEHIND_SERVICE)
def test_the_network_policy_admits_only_labelled_pods_on_the_proxys_port(
    proxy: ProxyContainer,
) -> None:
    labels = pod_labels(proxy.workload)
    (policy,) = [
        d
        for d in proxy.docs
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    ]
    assert "Ingress" in policy["spec"]["policyTypes"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"]
    for peer in rule["from"]:
        assert set(peer) == {"podSelector"}  # no ipBlock, no bare namespaceSelector
        assert peer["podSelector"]["matchLabels"]  # {} would admit every pod
        assert not peer["podSelector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in proxy.container["ports"]}
    assert [p["port"] for p in rule["ports"]] == list(port_names)


def secret_references() -> set[tuple[str, str]]:
    """(Secret, key) pairs the manifests read."""
    found = set()
    for doc in workloads():
        spec = pod_spec(doc)
        for container in all_containers(spec):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    found.add((ref["name"], ref["key"]))
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                for item in volume["secret"]["items"]:
                    found.add((volume["secret"]["secretName"], item["key"]))
    return found


def test_the_readme_creates_every_secret_key_the_manifests_read() -> None:
    readme = (KUBERNETES_DIR / "README.md").read_text(encoding="utf-8")
    created = set()
    for line in readme.replace("\\\n", " ").splitlines():
        if "create secret generic " not in line:
            continue
        words = shlex.split(line.split("create secret generic ", 1)[1])
        for word in words[1:]:
            if match := re.match(r"--from-(?:literal|file)=([^=]+)", word):
                created.add((words[0], match.group(1)))
    references = secret_references()
    assert references
    assert references <= created, references - created
