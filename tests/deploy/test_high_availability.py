"""The HA overlay and the compose file with PostgreSQL: render, validate, keep their promises."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support import require_tool, run_tool

from .conftest import DEPLOY, KUBERNETES, Rendered, exporter_container

OVERLAY = KUBERNETES / "overlays" / "ha"
KUBERNETES_VERSION = "1.32"
POD_LABELS = {"app.kubernetes.io/name": "aep-flow-exporter"}


@pytest.fixture(scope="module")
def ha() -> Rendered:
    """`kubectl kustomize deploy/kubernetes/overlays/ha`."""
    result = run_tool([require_tool("kubectl"), "kustomize", str(OVERLAY)])
    assert result.returncode == 0, result.stderr
    return Rendered([doc for doc in yaml.safe_load_all(result.stdout) if doc])


def test_the_overlay_validates_against_kubernetes_schemas(ha: Rendered) -> None:
    """Every core resource the overlay renders is valid (strict) for Kubernetes 1.32."""
    for resource in ha.resources:
        if resource["kind"] not in ("ServiceMonitor", "PrometheusRule"):
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_two_replicas_roll_one_at_a_time_without_a_volume_claim(ha: Rendered) -> None:
    """2 replicas, RollingUpdate that never drops below 2 ready, no PVC anywhere."""
    deployment = ha.one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert ha.all_of("PersistentVolumeClaim") == []
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert not any("persistentVolumeClaim" in volume for volume in volumes)


def test_a_disruption_budget_keeps_one_replica(ha: Rendered) -> None:
    """The PodDisruptionBudget selects the exporter's pods and keeps one available."""
    budget = ha.one("PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == POD_LABELS


def test_the_state_url_comes_from_a_secret_and_readiness_follows_the_store(ha: Rendered) -> None:
    """AEP_EXPORTER_STATE_URL is a secretKeyRef (never a literal); readiness is /readyz."""
    container: dict[str, Any] = exporter_container(ha.one("Deployment"))
    [state_url] = [e for e in container["env"] if e["name"] == "AEP_EXPORTER_STATE_URL"]
    assert state_url["valueFrom"]["secretKeyRef"] == {
        "name": "aep-flow-exporter-state-url",
        "key": "url",
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config = ha.one("ConfigMap", "aep-flow-exporter-env-")["data"]
    assert "AEP_EXPORTER_STATE_URL" not in config


def test_the_network_policy_lets_replicas_reach_postgresql(ha: Rendered) -> None:
    """Egress allows PostgreSQL's port beside DNS and HTTPS."""
    egress = ha.one("NetworkPolicy")["spec"]["egress"]
    ports = {port["port"] for rule in egress for port in rule["ports"]}
    assert ports == {53, 443, 5432}


def test_docker_compose_accepts_the_postgresql_stack() -> None:
    """`docker-compose config` accepts compose.yaml with compose.ha.yaml over it."""
    docker_compose = require_tool("docker-compose")
    files = ["-f", str(DEPLOY / "compose.yaml"), "-f", str(DEPLOY / "compose.ha.yaml")]
    result = run_tool([docker_compose, *files, "config"])
    assert result.returncode == 0, result.stderr
    stack = yaml.safe_load(result.stdout)
    assert "postgres" in stack["services"]
    exporter = stack["services"]["exporter"]
    assert exporter["environment"]["AEP_EXPORTER_STATE_URL"].startswith("postgresql://")
    assert "postgres" in exporter["depends_on"]
