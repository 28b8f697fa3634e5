"""The deployment files in deploy/: Kubernetes manifests and the systemd user unit.

Each is checked against what it must agree with, so that none drifts unseen:
Kubernetes' own schemas (kubernetes-validate, strict, shipped in the package, no
network), the proxy's config loader, the Dockerfile, the reserved paths of
DESIGN 1, the CLI's exit statuses, and ``systemd-analyze verify``. The probes and
the unit's command line are also run for real, against the fake Criteo on loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import kubernetes_validate
import pytest
import yaml

from proxy.config.loader import load_config, parse_config
from proxy.config.schema import CLIENT_ID_ENV_VAR, CONFIG_ENV_VAR, Config, CredentialsConfig
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from proxy.server.app import build_app
from proxy.tokens.store import TokenStore
from tests import conftest
from tests.conftest import StartProxy, clean_env

REPO = Path(__file__).resolve().parent.parent.parent
KUBERNETES_DIR = REPO / "deploy" / "kubernetes"
UNIT_FILE = REPO / "deploy" / "systemd" / "criteo-proxy.service"

# The oldest Kubernetes minor still supported upstream when these were written (1.35-1.37,
# December 2026). The manifests need 1.34 at least: native sidecars (GA 1.33) and the
# preStop sleep action (GA 1.34).
KUBERNETES_VERSION = "1.35.0"

# What each manifest holds: a manifest added to deploy/kubernetes/ must be listed here,
# and so is checked like the others.
MANIFEST_KINDS = {
    "sidecar.yaml": ["ConfigMap", "Deployment"],
    "shared.yaml": ["ConfigMap", "Deployment", "Service", "NetworkPolicy"],
    "authorization-code.yaml": [
        "PersistentVolumeClaim",
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
    ],
    "authorize.yaml": ["Pod"],
}

# DESIGN 1, "Reserved paths": served by the proxy itself, never forwarded.
HEALTH_PATH = "/_proxy/health"  # 200 while the process serves; never asks for a token
READY_PATH = "/_proxy/ready"  # 200 when a token is cached or can be fetched now
API_KEY_ENV_VAR = "CRITEO_PROXY_API_KEY"  # what the manifests' configs name in api_keys
CONFIG_ERROR_STATUS = 2  # DESIGN 1 / 3.4: a config error exits 2 with one line


# --- what the manifests say -------------------------------------------------------------


def load_manifest(name: str) -> list[dict[str, Any]]:
    text = (KUBERNETES_DIR / name).read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def all_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for name in MANIFEST_KINDS:
        for doc in load_manifest(name):
            yield name, doc


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = (
        workload["spec"] if workload["kind"] == "Pod" else workload["spec"]["template"]["spec"]
    )
    return spec


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    meta = workload if workload["kind"] == "Pod" else workload["spec"]["template"]
    labels: dict[str, str] = meta["metadata"]["labels"]
    return labels


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def is_proxy_image(container: dict[str, Any]) -> bool:
    repository = container["image"].rsplit(":", 1)[0]
    return repository.rsplit("/", 1)[-1] == "criteo-proxy"


@dataclass(frozen=True)
class ProxyContainer:
    """A criteo-proxy container of a manifest, with its pod and its config file."""

    manifest: str
    workload: dict[str, Any]
    container: dict[str, Any]
    config_text: str
    docs: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return f"{self.manifest}:{self.workload['metadata']['name']}"

    @property
    def spec(self) -> dict[str, Any]:
        return pod_spec(self.workload)

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        return {item["name"]: item for item in self.container.get("env", [])}

    def volume(self, name: str) -> dict[str, Any]:
        (volume,) = [v for v in self.spec["volumes"] if v["name"] == name]
        return volume

    def mounts(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(volumeMount, volume) pairs of this container."""
        for mount in self.container.get("volumeMounts", []):
            yield mount, self.volume(mount["name"])

    def mount_of(self, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The mount holding PATH (the longest mountPath that is a parent of it)."""
        found = [
            (mount, volume)
            for mount, volume in self.mounts()
            if PurePosixPath(path).is_relative_to(mount["mountPath"])
        ]
        assert found, f"{self.id}: nothing is mounted at {path}"
        return max(found, key=lambda pair: len(pair[0]["mountPath"]))

    def placeholder_environ(self) -> dict[str, str]:
        """The container's variables with stand-in values: what ${VAR} may name."""
        return {name: f"placeholder-{name.lower()}" for name in self.env}

    def parse(self, tmp_path: Path, **environ: str) -> Config:
        """The embedded config.yaml through the proxy's own loader, as the container reads it."""
        path = tmp_path / f"{self.workload['metadata']['name']}.yaml"
        path.write_text(self.config_text, encoding="utf-8")
        return load_config(
            str(path),
            environ={**self.placeholder_environ(), **environ},
            require_credentials=False,
        )

    def services(self) -> list[dict[str, Any]]:
        labels = pod_labels(self.workload)
        return [
            doc
            for doc in self.docs
            if doc["kind"] == "Service"
            and doc["spec"]["selector"].items() <= labels.items()
            and doc["metadata"].get("namespace") == self.workload["metadata"].get("namespace")
        ]


def find_proxy_containers() -> list[ProxyContainer]:
    found = []
    # authorize.yaml uses authorization-code.yaml's: they are applied to one namespace.
    config_maps = {
        (d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for _, d in all_documents()
        if d["kind"] == "ConfigMap"
    }
    for name in MANIFEST_KINDS:
        docs = load_manifest(name)
        for workload in docs:
            if workload["kind"] not in ("Deployment", "Pod"):
                continue
            spec = pod_spec(workload)
            for container in all_containers(spec):
                if not is_proxy_image(container):
                    continue
                env = {item["name"]: item for item in container.get("env", [])}
                config_path = PurePosixPath(env[CONFIG_ENV_VAR]["value"])
                (mount,) = [
                    m
                    for m in container["volumeMounts"]
                    if PurePosixPath(m["mountPath"]) == config_path.parent
                ]
                (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
                namespace = workload["metadata"].get("namespace")
                config_map = config_maps[namespace, volume["configMap"]["name"]]
                text = config_map["data"][config_path.name]
                found.append(ProxyContainer(name, workload, container, text, docs))
    return found


PROXY_CONTAINERS = find_proxy_containers()
SERVING = [p for p in PROXY_CONTAINERS if p.workload["kind"] == "Deployment"]
BEHIND_SERVICE = [p for p in SERVING if p.services()]
WITH_TOKEN_STORE = [
    p
    for p in PROXY_CONTAINERS
    if yaml.safe_load(p.config_text)["credentials"]["grant_type"] == "authorization_code"
]


def proxy_containers(chosen: list[ProxyContainer] = PROXY_CONTAINERS) -> Any:
    return pytest.mark.parametrize("proxy", chosen, ids=[p.id for p in chosen])


def probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    kinds = ("startupProbe", "livenessProbe", "readinessProbe")
    return {kind: container[kind] for kind in kinds if kind in container}


def probe_url(probe: dict[str, Any]) -> str:
    url: str = probe["exec"]["command"][-1]
    return url


# --- what the Dockerfile says -----------------------------------------------------------


@dataclass(frozen=True)
class Image:
    uid: int
    gid: int
    home: str
    venv: str
    port: int
    entrypoint: str


def read_dockerfile() -> Image:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")

    def one(pattern: str) -> str:
        (match,) = re.findall(pattern, text, flags=re.MULTILINE)
        return str(match)

    image = Image(
        uid=int(one(r"useradd .*--uid (\d+)")),
        gid=int(one(r"groupadd .*--gid (\d+)")),
        home=one(r"--home-dir (\S+)"),
        venv=one(r"python3 -m venv (\S+)$"),
        port=int(one(r"^EXPOSE (\d+)$")),
        entrypoint=one(r'^ENTRYPOINT \["([^"]+)"\]$'),
    )
    # The image runs as that user, with the venv on its PATH, the entry point in it.
    assert one(r"^USER (\S+)$") == f"{image.uid}:{image.gid}"
    assert f"PATH={image.venv}/bin:" in text
    assert image.entrypoint == "criteo-proxy"
    return image


IMAGE = read_dockerfile()


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


# --- 2. the image: user, paths, ports ---------------------------------------------------


@proxy_containers()
def test_the_proxy_runs_as_the_images_user_read_only_without_privileges(
    proxy: ProxyContainer,
) -> None:
    context = proxy.container["securityContext"]
    assert context["runAsUser"] == IMAGE.uid
    assert context["runAsGroup"] == IMAGE.gid
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in context
    assert proxy.spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    "workload",
    [d for _, d in all_documents() if d["kind"] in ("Deployment", "Pod")],
    ids=lambda d: d["metadata"]["name"],
)
def test_every_pod_meets_the_restricted_pod_security_standard(workload: dict[str, Any]) -> None:
    spec = pod_spec(workload)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in all_containers(spec):  # the ETL's too
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert "add" not in context["capabilities"], container["name"]
    for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(host_namespace)


@proxy_containers()
def test_the_commands_are_the_images_venv_and_the_config_is_the_config_maps_file(
    proxy: ProxyContainer,
) -> None:
    command = proxy.container["command"]
    if proxy.workload["kind"] == "Deployment":
        assert command == [f"{IMAGE.venv}/bin/{IMAGE.entrypoint}"]
        assert proxy.container["args"] == ["run"]  # the image's CMD (--host 0.0.0.0) replaced
    else:  # authorize.yaml waits for `kubectl exec ... criteo-proxy authorize`
        assert command[0] == f"{IMAGE.venv}/bin/python3"
    for probe in probes(proxy.container).values():
        assert probe["exec"]["command"][0] == f"{IMAGE.venv}/bin/python3"
    mount, volume = proxy.mount_of(proxy.env[CONFIG_ENV_VAR]["value"])
    assert "configMap" in volume
    assert mount["readOnly"] is True


@proxy_containers()
def test_the_image_tag_is_the_projects_version(proxy: ProxyContainer) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert proxy.container["image"].rsplit(":", 1)[1] == pyproject["project"]["version"]


@proxy_containers(SERVING)
def test_one_port_everywhere_the_dockerfiles_the_configs_the_containers_and_the_probes(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    config = proxy.parse(tmp_path)
    assert config.listen.port == IMAGE.port
    ports = proxy.container.get("ports", [])
    assert [p["containerPort"] for p in ports] == ([IMAGE.port] if proxy.services() else [])
    for probe in probes(proxy.container).values():
        url = urlsplit(probe_url(probe))
        assert (url.scheme, url.hostname, url.port) == ("http", "127.0.0.1", IMAGE.port)
    for service in proxy.services():
        (service_port,) = service["spec"]["ports"]
        (named,) = [p for p in ports if p["name"] == service_port["targetPort"]]
        assert named["containerPort"] == IMAGE.port


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
    # Neither the secret nor the API keys are written in the manifest.
    assert "client_secret" not in yaml.safe_load(proxy.config_text)["credentials"]
    assert all(
        key.reveal() == proxy.placeholder_environ()[API_KEY_ENV_VAR]
        for key in config.security.api_keys
    )


@proxy_containers()
def test_the_client_secret_file_is_a_key_of_the_mounted_secret(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    secret_file = proxy.parse(tmp_path).credentials.client_secret_file
    assert secret_file is not None
    assert "CRITEO_CLIENT_SECRET" not in proxy.env  # it would win over the file
    mount, volume = proxy.mount_of(secret_file)
    assert mount["readOnly"] is True
    items = {item["path"]: item["key"] for item in volume["secret"]["items"]}
    relative = str(PurePosixPath(secret_file).relative_to(mount["mountPath"]))
    assert items[relative] == "client_secret"
    # The files are root's: the proxy's user reads them through its group (fsGroup).
    mode = volume["secret"]["defaultMode"]
    assert (mode & 0o040 and proxy.spec["securityContext"]["fsGroup"] == IMAGE.gid) or (
        mode & 0o004
    )
    assert not mode & 0o002


@proxy_containers(SERVING)
def test_a_proxy_behind_a_service_needs_keys_and_a_sidecar_listens_on_loopback_only(
    proxy: ProxyContainer, tmp_path: Path
) -> None:
    config = proxy.parse(tmp_path)
    if proxy.services():
        assert config.listen.host == "0.0.0.0"
        assert config.security.api_keys
        assert proxy.env[API_KEY_ENV_VAR]["valueFrom"]["secretKeyRef"]
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
        assert "persistentVolumeClaim" in volume
        assert store_dir.startswith(IMAGE.home + "/")
        assert sorted(writable) == sorted(["/tmp", store_dir])
    else:
        assert writable == ["/tmp"]


@proxy_containers(WITH_TOKEN_STORE)
def test_a_token_store_has_one_writer_one_replica_recreated_and_kept_unchanged_by_fs_group(
    proxy: ProxyContainer,
) -> None:
    if proxy.workload["kind"] == "Deployment":
        assert proxy.workload["spec"]["replicas"] == 1
        assert proxy.workload["spec"]["strategy"] == {"type": "Recreate"}
    # fsGroup's default (Always) would chmod g+rw every file at each mount: a 0660
    # store, which the proxy refuses at start.
    assert proxy.spec["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    claims = {
        volume["persistentVolumeClaim"]["claimName"]
        for _, volume in proxy.mounts()
        if "persistentVolumeClaim" in volume
    }
    pvcs = {
        d["metadata"]["name"] for _, d in all_documents() if d["kind"] == "PersistentVolumeClaim"
    }
    assert claims
    assert claims <= pvcs


def test_the_authorize_pod_and_the_deployment_share_the_store_config_and_secret() -> None:
    (authorize,) = [p for p in PROXY_CONTAINERS if p.manifest == "authorize.yaml"]
    (deployment,) = [p for p in SERVING if p.manifest == "authorization-code.yaml"]
    assert authorize.config_text == deployment.config_text

    def sources(proxy: ProxyContainer) -> dict[str, Any]:
        return {
            mount["mountPath"]: {k: v for k, v in volume.items() if k != "name"}
            for mount, volume in proxy.mounts()
        }

    assert sources(authorize) == sources(deployment)
    assert authorize.env == deployment.env


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
    scripts = {
        tuple(probe["exec"]["command"][:-1])
        for proxy in SERVING
        for probe in probes(proxy.container).values()
    }
    assert len(scripts) == 1


def with_token_store(config: Config, tmp_path: Path, criteo: FakeCriteo) -> Config:
    """The config with its store in TMP_PATH, holding a refresh token the fake knows."""
    refresh_token = "rt-" + secrets.token_urlsafe(16)
    criteo.refresh_tokens[refresh_token] = DEMO_CLIENT_ID
    store = tmp_path / "store" / "tokens.json"
    TokenStore(str(store)).save(DEMO_CLIENT_ID, refresh_token)
    credentials = dataclasses.replace(config.credentials, token_store=str(store))
    return dataclasses.replace(config, credentials=credentials)


async def run_probe(
    probe: dict[str, Any], port: int, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    """The probe's command as the kubelet runs it in the container, aimed at PORT."""
    command = probe["exec"]["command"]
    url = urlsplit(command[-1])._replace(netloc=f"127.0.0.1:{port}").geturl()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command[1:-1],
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
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(DEMO_CLIENT_SECRET + "\n", encoding="utf-8")
    raw = yaml.safe_load(proxy.config_text)
    raw["upstream"] = {"url": criteo_url}
    raw["credentials"]["client_secret_file"] = str(secret_file)
    environ = {CLIENT_ID_ENV_VAR: DEMO_CLIENT_ID, API_KEY_ENV_VAR: api_key}
    config = parse_config(raw, environ={k: v for k, v in environ.items() if k in proxy.env})
    if config.credentials.grant_type == "authorization_code":
        config = with_token_store(config, tmp_path, criteo)
    if token_endpoint == "refusing":
        criteo.token_failure_status = 401
    client = await start_proxy(config)
    assert client.port is not None
    probe_env = clean_env(**{k: v for k, v in environ.items() if k in proxy.env})

    for kind, probe in probes(proxy.container).items():
        result = await run_probe(probe, client.port, probe_env)
        expected = 1 if (kind == "readinessProbe" and token_endpoint == "refusing") else 0
        assert result.returncode == expected, (kind, result.stderr.decode())

    if config.security.api_keys:  # readiness needs the key, liveness does not (DESIGN 4)
        wrong = {**probe_env, API_KEY_ENV_VAR: "not-the-key"}
        found = probes(proxy.container)
        assert (await run_probe(found["readinessProbe"], client.port, wrong)).returncode == 1
        assert (await run_probe(found["livenessProbe"], client.port, wrong)).returncode == 0


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
    for _, doc in all_documents():
        if doc["kind"] not in ("Deployment", "Pod"):
            continue
        spec = pod_spec(doc)
        for container in all_containers(spec):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    found.add((ref["name"], ref["key"]))
        for volume in spec["volumes"]:
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


# --- 6. the systemd user unit -----------------------------------------------------------


def read_unit() -> dict[str, list[str]]:
    """Key -> values in file order (a key may repeat: SystemCallFilter=)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT_FILE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key}", []).append(value)
    return values


UNIT = read_unit()


def exec_start(home: Path) -> list[str]:
    (line,) = UNIT["Service.ExecStart"]
    return shlex.split(line.replace("%h", str(home)))


def test_exec_start_is_where_the_units_install_steps_put_criteo_proxy() -> None:
    binary = exec_start(Path("~"))[0]
    comments = [line for line in UNIT_FILE.read_text(encoding="utf-8").splitlines() if "#" in line]
    (link,) = [line for line in comments if "ln -sf " in line]
    source, target = shlex.split(link.split("&&", 1)[1])[-2:]
    assert str(Path(target) / Path(source).name) == binary
    assert any("pipx install" in line and os.path.dirname(binary) in line for line in comments)


def installed_script() -> Path:
    script = shutil.which("criteo-proxy", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.fail("criteo-proxy is not installed next to this Python: pip install -e '.[dev]'")
    return Path(script)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home where criteo-proxy is installed as the unit's comment says (~/.local/bin)."""
    home = tmp_path / "home"
    binary = exec_start(home)[0]
    Path(binary).parent.mkdir(parents=True)
    Path(binary).symlink_to(installed_script())
    return home


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def systemd_analyze_verify(home: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "--user", "verify", str(UNIT_FILE)],
        env={**clean_env(), "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_the_user_unit_verifies_with_systemd_analyze(home: Path, tmp_path: Path) -> None:
    result = systemd_analyze_verify(home, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # not even a warning


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_does_fail_when_exec_start_is_not_installed(
    tmp_path: Path,
) -> None:
    """So the check above says something about ExecStart."""
    result = systemd_analyze_verify(tmp_path / "empty-home", tmp_path)
    assert result.returncode != 0
    assert "is not executable" in result.stderr


def test_the_unit_restarts_on_failure_but_not_on_a_config_error() -> None:
    assert UNIT["Service.Restart"] == ["on-failure"]
    assert UNIT["Service.RestartPreventExitStatus"] == [str(CONFIG_ERROR_STATUS)]
    assert UNIT["Install.WantedBy"] == ["default.target"]  # a user unit: the session's target


def test_the_sandbox_leaves_exactly_the_token_stores_directory_writable() -> None:
    assert UNIT["Service.ProtectSystem"] == ["strict"]
    assert UNIT["Service.ProtectHome"] == ["read-only"]
    # A user manager needs a user namespace for those (implied only from systemd 253 on).
    assert UNIT["Service.PrivateUsers"] == ["yes"]
    store_dir = os.path.dirname(CredentialsConfig().token_store).replace("~", "%h", 1)
    assert UNIT["Service.ReadWritePaths"] == [f"-{store_dir}"]
    config_path = exec_start(Path("%h"))[exec_start(Path("%h")).index("--config") + 1]
    assert os.path.dirname(config_path) == store_dir  # the secret file lives beside it
    assert UNIT["Service.UMask"] == ["0077"]


async def test_the_units_command_line_serves_with_the_files_its_comment_installs(
    home: Path,
    criteo_url: str,
    start_cli_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ExecStart as systemd runs it (%h expanded), with the secret in a 0600 file."""
    command = exec_start(home)
    config_path = Path(command[command.index("--config") + 1])
    config_path.parent.mkdir(mode=0o700, parents=True)
    secret = config_path.parent / "client_secret"
    secret.write_text(DEMO_CLIENT_SECRET + "\n", encoding="utf-8")
    secret.chmod(0o600)
    config_path.write_text(
        f"listen: {{port: 0}}\nupstream: {{url: {criteo_url!r}}}\n"
        f"credentials:\n  client_id: {DEMO_CLIENT_ID}\n"
        "  client_secret_file: ~/.config/criteo-proxy/client_secret\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(conftest, "cli_command", list)  # COMMAND is the whole command line
    env = clean_env(HOME=str(home))

    server = await start_cli_server(*command, env=env)
    async with aiohttp.ClientSession() as http, http.get(server.url + READY_PATH) as resp:
        assert resp.status == 200, await resp.text()
    (timeout,) = UNIT["Service.TimeoutStopSec"]
    assert await server.stop(timeout=float(timeout)) == 0

    config_path.write_text("listen: {prot: 0}\n", encoding="utf-8")  # a typo
    result = await conftest.run_cli(*command, env=env)
    assert result.returncode == CONFIG_ERROR_STATUS, result.stderr
    assert "listen.prot" in result.stderr
