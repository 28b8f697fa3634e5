"""The manifests run the Dockerfile's image as built: its user, venv, entry point, port, tag."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from proxy.config.schema import CONFIG_ENV_VAR
from tests.deploy.conftest import (
    IMAGE,
    REPO,
    SERVING,
    ProxyContainer,
    all_containers,
    pod_spec,
    probe_url,
    probes,
    proxy_containers,
    workloads,
)

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
    workloads(),
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
    if proxy.workload["kind"] in ("Deployment", "StatefulSet"):
        assert command == [f"{IMAGE.venv}/bin/{IMAGE.entrypoint}"]
        assert proxy.container["args"] == ["run"]
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
