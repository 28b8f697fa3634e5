"""What the deploy files say, read once for the deploy tests: the manifests, the Dockerfile."""

from __future__ import annotations

import copy
import dataclasses
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import yaml

from proxy.config.loader import load_config, parse_config
from proxy.config.schema import CLIENT_ID_ENV_VAR, CONFIG_ENV_VAR, Config
from proxy.fakes.criteo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FakeCriteo
from proxy.tokens.store import TokenStore

if TYPE_CHECKING:
    from tests.deploy.redis_manifest import ManifestRedis

REPO = Path(__file__).resolve().parent.parent.parent
KUBERNETES_DIR = REPO / "deploy" / "kubernetes"

# What each manifest holds: a manifest added to deploy/kubernetes/ must be listed here,
# and so is checked like the others.
MANIFEST_KINDS = {
    "sidecar.yaml": ["ConfigMap", "Deployment"],
    "shared.yaml": ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "NetworkPolicy"],
    "authorization-code.yaml": [
        "ConfigMap",
        "StatefulSet",
        "PodDisruptionBudget",
        "Service",
        "NetworkPolicy",
    ],
    "authorize.yaml": ["Pod", "NetworkPolicy"],
    "redis.yaml": ["ConfigMap", "StatefulSet", "Service", "NetworkPolicy"],
}

# DESIGN 1, "Reserved paths": served by the proxy itself, never forwarded.
HEALTH_PATH = "/_proxy/health"  # 200 while the process serves; never asks for a token
READY_PATH = "/_proxy/ready"  # 200 when a token is cached or can be fetched now
PLACEHOLDER_API_KEY = "placeholder-api-key"


# --- what the manifests say -------------------------------------------------------------


def load_manifest(name: str) -> list[dict[str, Any]]:
    text = (KUBERNETES_DIR / name).read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def all_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for name in MANIFEST_KINDS:
        for doc in load_manifest(name):
            yield name, doc


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Pod")  # what runs containers here


def workloads() -> list[dict[str, Any]]:
    return [doc for _, doc in all_documents() if doc["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = (
        workload["spec"] if workload["kind"] == "Pod" else workload["spec"]["template"]["spec"]
    )
    return spec


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    meta = workload if workload["kind"] == "Pod" else workload["spec"]["template"]
    labels: dict[str, str] = meta["metadata"]["labels"]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels; matchExpressions In, NotIn) selects LABELS."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] in ("In", "NotIn"), expression
        value = labels.get(expression["key"])
        if (value in expression["values"]) != (expression["operator"] == "In"):
            return False
    return True


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
        """The pod's volume NAME; a StatefulSet's claim template as a persistentVolumeClaim."""
        templates = self.workload["spec"].get("volumeClaimTemplates", [])
        claims = [
            {"name": t["metadata"]["name"], "persistentVolumeClaim": {"claimName": name}}
            for t in templates
            if t["metadata"]["name"] == name
        ]
        (volume,) = [v for v in self.spec["volumes"] if v["name"] == name] + claims
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

    @property
    def api_keys_file(self) -> str | None:
        """security.api_keys_file as the embedded config names it (a path in the container)."""
        security = yaml.safe_load(self.config_text).get("security") or {}
        path: str | None = security.get("api_keys_file")
        return path

    def parse(self, tmp_path: Path, **environ: str) -> Config:
        """The embedded config.yaml through the proxy's own loader, as the container reads it
        (its keys file, if any, holding PLACEHOLDER_API_KEY)."""
        raw = with_api_keys_file(yaml.safe_load(self.config_text), tmp_path, [PLACEHOLDER_API_KEY])
        path = tmp_path / f"{self.workload['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return load_config(
            str(path),
            # The image's own variable too: a file without listen.host listens on its host.
            environ={
                "CRITEO_PROXY_HOST": IMAGE.listen_host,
                **self.placeholder_environ(),
                **environ,
            },
            require_credentials=False,
        )

    @property
    def redis_password_variable(self) -> str | None:
        """The ${VAR} that coordination.redis_url takes its password from, if any."""
        coordination = yaml.safe_load(self.config_text).get("coordination") or {}
        url = coordination.get("redis_url")
        if url is None:
            return None
        match = re.fullmatch(r"\$\{(\w+)\}", urlsplit(url).password or "")
        assert match, f"{self.id}: the Redis password is not a ${{VAR}} of the container"
        return match.group(1)

    def local_config(
        self,
        tmp_path: Path,
        *,
        criteo: FakeCriteo,
        criteo_url: str,
        api_key: str,
        redis: ManifestRedis | None = None,
    ) -> Config:
        """The embedded config as this container runs it, aimed at loopback: the fake
        Criteo, the client secret and the keys in files of TMP_PATH, a token store the fake
        knows (authorization code), and redis.yaml's Redis run for real (coordination)."""
        secret_file = tmp_path / "client_secret"
        secret_file.write_text(DEMO_CLIENT_SECRET + "\n", encoding="utf-8")
        raw = with_api_keys_file(yaml.safe_load(self.config_text), tmp_path, [api_key])
        raw["upstream"] = {"url": criteo_url}
        raw["credentials"]["client_secret_file"] = str(secret_file)
        environ = {CLIENT_ID_ENV_VAR: DEMO_CLIENT_ID}
        variable = self.redis_password_variable
        if variable is not None:
            assert redis is not None, f"{self.id} needs redis.yaml's Redis"
            url = raw["coordination"]["redis_url"]
            where = urlsplit(url)
            local = url.replace(f"@{where.hostname}:{where.port}/", f"@127.0.0.1:{redis.port}/")
            assert local != url
            raw["coordination"]["redis_url"] = local
            environ[variable] = redis.password
        config = parse_config(raw, environ={k: v for k, v in environ.items() if k in self.env})
        if config.credentials.grant_type == "authorization_code":
            config = with_token_store(config, tmp_path, criteo)
        return config

    def services(self) -> list[dict[str, Any]]:
        labels = pod_labels(self.workload)
        return [
            doc
            for doc in self.docs
            if doc["kind"] == "Service"
            and doc["spec"]["selector"].items() <= labels.items()
            and doc["metadata"].get("namespace") == self.workload["metadata"].get("namespace")
        ]


def with_api_keys_file(raw: dict[str, Any], tmp_path: Path, keys: list[str]) -> dict[str, Any]:
    """RAW with its security.api_keys_file at a file of TMP_PATH holding KEYS one a line,
    as the mounted Secret holds them in the container."""
    security = raw.get("security") or {}
    if "api_keys_file" not in security:
        return raw
    raw = copy.deepcopy(raw)
    keys_file = tmp_path / "api-keys"
    keys_file.write_text("".join(f"{key}\n" for key in keys), encoding="utf-8")
    raw["security"]["api_keys_file"] = str(keys_file)
    return raw


def with_token_store(config: Config, tmp_path: Path, criteo: FakeCriteo) -> Config:
    """The config with its store in TMP_PATH, holding a refresh token the fake knows."""
    refresh_token = "rt-" + secrets.token_urlsafe(16)
    criteo.refresh_tokens[refresh_token] = DEMO_CLIENT_ID
    store = tmp_path / "store" / "tokens.json"
    TokenStore(str(store)).save(DEMO_CLIENT_ID, refresh_token)
    credentials = dataclasses.replace(config.credentials, token_store=str(store))
    return dataclasses.replace(config, credentials=credentials)


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
            if workload["kind"] not in WORKLOAD_KINDS:
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
SERVING = [p for p in PROXY_CONTAINERS if p.workload["kind"] in ("Deployment", "StatefulSet")]
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
    listen_host: str  # its CRITEO_PROXY_HOST: listen.host unless the config says otherwise


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
        listen_host=one(r"CRITEO_PROXY_HOST=(\S+)$"),
    )
    # The image runs as that user, with the venv on its PATH, the entry point in it.
    assert one(r"^USER (\S+)$") == f"{image.uid}:{image.gid}"
    assert f"PATH={image.venv}/bin:" in text
    assert image.entrypoint == "criteo-proxy"
    return image


IMAGE = read_dockerfile()


# --- redis.yaml's Redis, run for real ------------------------------------------------------


@pytest.fixture
async def manifest_redis(tmp_path: Path) -> AsyncIterator[ManifestRedis]:
    """redis.yaml's Redis as its container runs it, on a free loopback port."""
    # Imported here: redis_manifest reads the manifests with this module's helpers.
    from tests.deploy.redis_manifest import started_manifest_redis

    async with started_manifest_redis(tmp_path) as server:
        yield server
