"""The kustomize base: renders, validates against Kubernetes schemas, and keeps its promises."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import yaml

from exporter.config import ENV_PREFIX
from exporter.durations import parse_duration
from tests.support import require_tool, run_tool

from .conftest import (
    DEPLOY,
    KUBERNETES,
    Instruction,
    Rendered,
    exporter_container,
    load_settings_from,
    port_of,
    stages,
    unknown_setting_names,
)

# A version kubernetes-validate ships schemas for, and still in common use.
KUBERNETES_VERSION = "1.32"
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "NetworkPolicy",
    "PersistentVolumeClaim",
    "Secret",
    "Service",
    "ServiceAccount",
}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
POD_LABELS = {"app.kubernetes.io/name": "aep-flow-exporter"}
UID = 65532


def env_of(rendered: Rendered) -> dict[str, str]:
    """The settings ConfigMap's data."""
    data: dict[str, str] = rendered.one("ConfigMap", "aep-flow-exporter-env-")["data"]
    return data


def pod_spec(rendered: Rendered) -> dict[str, Any]:
    """The Deployment's pod spec."""
    spec: dict[str, Any] = rendered.one("Deployment")["spec"]["template"]["spec"]
    return spec


def mount_of(rendered: Rendered, volume: str) -> dict[str, Any]:
    """The exporter container's mount of a volume."""
    mounts = exporter_container(rendered.one("Deployment"))["volumeMounts"]
    found: dict[str, Any] = next(m for m in mounts if m["name"] == volume)
    return found


def volume_of(rendered: Rendered, name: str) -> dict[str, Any]:
    """A volume of the pod spec."""
    found: dict[str, Any] = next(v for v in pod_spec(rendered)["volumes"] if v["name"] == name)
    return found


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector selects these labels."""
    return all(labels.get(key) == value for key, value in selector.items())


def test_base_renders_every_resource_without_a_namespace(rendered: Rendered) -> None:
    """The base renders each expected kind and leaves the namespace to the overlay."""
    kinds = sorted(r["kind"] for r in rendered.resources)
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "PrometheusRule",
            "Secret",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    )
    assert [r["metadata"]["name"] for r in rendered.resources if "namespace" in r["metadata"]] == []


def schema_problems(rendered: Rendered) -> list[str]:
    """Why core resources fail strict validation against Kubernetes 1.32 (none: empty)."""
    problems = []
    for resource in rendered.resources:
        if resource["kind"] in CRD_KINDS:
            continue
        assert resource["kind"] in CORE_KINDS
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            problems.append(f"{resource['kind']}/{resource['metadata']['name']}: {path}: {exc}")
    return problems


def test_core_resources_validate_against_kubernetes_schemas(rendered: Rendered) -> None:
    """Every core resource validates (strictly: no unknown fields) against Kubernetes 1.32."""
    assert schema_problems(rendered) == []


def test_deployment_runs_one_replica_recreated(rendered: Rendered) -> None:
    """One exporter per state store: one replica, replaced with Recreate, never rolled."""
    spec = rendered.one("Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"] == POD_LABELS
    assert selects(POD_LABELS, spec["template"]["metadata"]["labels"])


def test_probes_ask_the_health_endpoints_on_the_webhook_listener(rendered: Rendered) -> None:
    """Startup and liveness ask /healthz, readiness /readyz, where no web config guards them."""
    container = exporter_container(rendered.one("Deployment"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    health_port = port_of(env_of(rendered)[f"{ENV_PREFIX}LISTEN_ADDRESS"])
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert ports[get["port"]] == health_port
        assert get.get("scheme", "HTTP") == "HTTP"
        paths[probe] = get["path"]
    assert paths == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def test_container_ports_are_the_listen_addresses(rendered: Rendered) -> None:
    """The named container ports are the ports the settings listen on."""
    container = exporter_container(rendered.one("Deployment"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = env_of(rendered)
    assert ports == {
        "webhook": port_of(env[f"{ENV_PREFIX}LISTEN_ADDRESS"]),
        "metrics": port_of(env[f"{ENV_PREFIX}METRICS_LISTEN_ADDRESS"]),
    }


def test_pod_runs_unprivileged_on_a_read_only_root(
    rendered: Rendered, dockerfile: list[Instruction]
) -> None:
    """The pod runs as the image's fixed non-root UID, read-only, capabilities dropped."""
    user = [i.arguments for i in stages(dockerfile)[-1] if i.keyword == "USER"][-1]
    assert user == f"{UID}:{UID}"
    pod = pod_spec(rendered)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["runAsGroup"] == UID
    assert pod["securityContext"]["fsGroup"] == UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = exporter_container(rendered.one("Deployment"))["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["runAsNonRoot"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    account = rendered.named("ServiceAccount", pod["serviceAccountName"])
    assert account is not None
    assert account["automountServiceAccountToken"] is False


def test_container_sets_requests_and_limits(rendered: Rendered) -> None:
    """CPU and memory have requests and limits."""
    resources = exporter_container(rendered.one("Deployment"))["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


def test_state_lives_on_the_persistent_volume_claim(rendered: Rendered) -> None:
    """The state file's directory is the PVC's mount; /tmp is an emptyDir."""
    state_path = PurePosixPath(env_of(rendered)[f"{ENV_PREFIX}STATE_PATH"])
    mounts = exporter_container(rendered.one("Deployment"))["volumeMounts"]
    state_mount = next(m for m in mounts if m["mountPath"] == str(state_path.parent))
    claim = volume_of(rendered, state_mount["name"])["persistentVolumeClaim"]["claimName"]
    pvc = rendered.named("PersistentVolumeClaim", claim)
    assert pvc is not None
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert state_mount.get("readOnly", False) is False
    tmp_mount = next(m for m in mounts if m["mountPath"] == "/tmp")
    assert "emptyDir" in volume_of(rendered, tmp_mount["name"])


def test_every_referenced_object_is_rendered(rendered: Rendered) -> None:
    """Each ConfigMap, Secret and claim the pod names exists (with kustomize's hash suffix)."""
    pod = pod_spec(rendered)
    wanted = [
        ("ConfigMap", ref["configMapRef"]["name"])
        for ref in exporter_container(rendered.one("Deployment"))["envFrom"]
    ]
    for volume in pod["volumes"]:
        if "configMap" in volume:
            wanted.append(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume:
            wanted.append(("Secret", volume["secret"]["secretName"]))
        if "persistentVolumeClaim" in volume:
            wanted.append(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
    missing = [(kind, name) for kind, name in wanted if rendered.named(kind, name) is None]
    assert missing == []


def test_settings_configmap_names_real_settings_that_load(
    rendered: Rendered, tmp_path: Path
) -> None:
    """Every variable of the settings ConfigMap is a real setting, and together they load."""
    env = env_of(rendered)
    assert unknown_setting_names(env) == []
    assert all(name.startswith(ENV_PREFIX) for name in env)
    settings = load_settings_from(env, tmp_path)
    assert settings.metrics_listen_address != ""
    assert settings.verification_on


def test_catalogue_and_secret_files_are_where_the_settings_point(rendered: Rendered) -> None:
    """The catalogue and client secret paths name a key of the mounted ConfigMap and Secret."""
    env = env_of(rendered)
    for setting, volume_name, kind, source in (
        ("CATALOGUE_PATH", "catalogue", "ConfigMap", "configMap"),
        ("CLIENT_SECRET_FILE", "client-secret", "Secret", "secret"),
    ):
        path = PurePosixPath(env[f"{ENV_PREFIX}{setting}"])
        mount = mount_of(rendered, volume_name)
        assert mount["readOnly"] is True
        assert str(path.parent) == mount["mountPath"]
        volume = volume_of(rendered, volume_name)[source]
        obj = rendered.named(kind, volume.get("name") or volume.get("secretName"))
        assert obj is not None
        assert path.name in obj["data"]


def test_catalogue_configmap_holds_the_example_catalogue(rendered: Rendered) -> None:
    """The base's catalogue is byte for byte deploy/catalogue.example.yaml."""
    example = (DEPLOY / "catalogue.example.yaml").read_text(encoding="utf-8")
    copy = (KUBERNETES / "base" / "catalogue.yaml").read_text(encoding="utf-8")
    assert copy == example, (
        "deploy/kubernetes/base/catalogue.yaml differs from deploy/catalogue.example.yaml: "
        "cp deploy/catalogue.example.yaml deploy/kubernetes/base/catalogue.yaml"
    )
    data = rendered.one("ConfigMap", "aep-flow-exporter-catalogue-")["data"]
    assert data == {"catalogue.yaml": example}


def test_termination_grace_outlasts_the_shutdown_grace(rendered: Rendered) -> None:
    """Kubernetes waits longer than the exporter's shutdown grace before it kills the pod."""
    grace = parse_duration(env_of(rendered)[f"{ENV_PREFIX}SHUTDOWN_GRACE"])
    assert pod_spec(rendered)["terminationGracePeriodSeconds"] >= grace + 10


def test_services_split_webhook_from_metrics(rendered: Rendered) -> None:
    """One Service carries only the webhook port, the other only the metrics port."""
    container = exporter_container(rendered.one("Deployment"))
    container_ports = {p["name"] for p in container["ports"]}
    services = {s["metadata"]["name"]: s for s in rendered.all_of("Service")}
    assert set(services) == {"aep-flow-exporter", "aep-flow-exporter-metrics"}
    for name, port in (("aep-flow-exporter", "webhook"), ("aep-flow-exporter-metrics", "metrics")):
        spec = services[name]["spec"]
        assert [p["targetPort"] for p in spec["ports"]] == [port]
        assert port in container_ports
        assert spec["selector"] == POD_LABELS


def test_servicemonitor_scrapes_only_the_metrics_service(rendered: Rendered) -> None:
    """The ServiceMonitor selects the metrics Service alone and scrapes its port every 30s."""
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    chosen = [
        s["metadata"]["name"]
        for s in rendered.all_of("Service")
        if selects(selector, s["metadata"]["labels"])
    ]
    assert chosen == ["aep-flow-exporter-metrics"]
    service = rendered.named("Service", "aep-flow-exporter-metrics")
    assert service is not None
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "30s"
    assert parse_duration(endpoint["scrapeTimeout"]) < parse_duration(endpoint["interval"])


def test_servicemonitor_job_is_the_job_the_alerts_select(rendered: Rendered) -> None:
    """The ServiceMonitor's job label is the job name of deploy/prometheus/prometheus.yml."""
    monitor = rendered.one("ServiceMonitor")["spec"]
    service = rendered.named("Service", "aep-flow-exporter-metrics")
    assert service is not None
    labels = service["metadata"]["labels"]
    # The operator's job label: the Service's label named by jobLabel, else the Service's name.
    job = labels.get(monitor.get("jobLabel", ""), service["metadata"]["name"])
    config_path = DEPLOY / "prometheus" / "prometheus.yml"
    assert config_path.exists(), "deploy/prometheus/prometheus.yml does not exist yet"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    jobs = [
        scrape["job_name"]
        for scrape in config["scrape_configs"]
        for static in scrape.get("static_configs", [])
        if any(t.startswith("exporter:") for t in static.get("targets", []))
    ]
    assert jobs == [job]


def test_networkpolicy_admits_prometheus_alone_to_the_metrics_port(rendered: Rendered) -> None:
    """The webhook port is open, the metrics port only to Prometheus pods."""
    policy = rendered.one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == POD_LABELS
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    ports = {
        p["name"]: p["containerPort"]
        for p in exporter_container(rendered.one("Deployment"))["ports"]
    }
    by_port: dict[int, list[Any]] = {}
    for rule in policy["ingress"]:
        for port in rule["ports"]:
            assert port["protocol"] == "TCP"
            by_port.setdefault(port["port"], []).append(rule.get("from"))
    assert set(by_port) == {ports["webhook"], ports["metrics"]}
    assert by_port[ports["webhook"]] == [None]
    assert by_port[ports["metrics"]] == [
        [
            {
                "namespaceSelector": {},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ]
    ]


def test_networkpolicy_allows_only_dns_and_https_out(rendered: Rendered) -> None:
    """Egress is DNS and HTTPS (signature keys from static.adobeioevents.com), nothing else."""
    egress = rendered.one("NetworkPolicy")["spec"]["egress"]
    allowed = sorted((p["protocol"], p["port"]) for rule in egress for p in rule["ports"])
    assert allowed == [("TCP", 53), ("TCP", 443), ("UDP", 53)]


# -- components/kube-prometheus-stack --------------------------------------------------------

COMPONENT = KUBERNETES / "components" / "kube-prometheus-stack"
# The overlay patch README "Deployment" gives for a Helm release with another name.
RELEASE_PATCH = {
    "target": {
        "group": "monitoring.coreos.com",
        "labelSelector": "app.kubernetes.io/name=aep-flow-exporter",
    },
    "patch": "- op: replace\n  path: /metadata/labels/release\n  value: prom\n",
}


def render_overlay(directory: Path, **extra: Any) -> Rendered:
    """`kubectl kustomize` of an overlay in `directory`: the base plus the component."""
    directory.mkdir(parents=True, exist_ok=True)
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize refuses absolute paths to other kustomizations.
        "resources": [os.path.relpath(KUBERNETES, directory)],
        "components": [os.path.relpath(COMPONENT, directory)],
        **extra,
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(overlay), encoding="utf-8")
    result = run_tool([require_tool("kubectl"), "kustomize", str(directory)])
    assert result.returncode == 0, f"kubectl kustomize failed:\n{result.stderr}"
    return Rendered([doc for doc in yaml.safe_load_all(result.stdout) if doc])


def without_release(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The resources with the `release` label removed from their metadata."""
    stripped = copy.deepcopy(resources)
    for resource in stripped:
        resource["metadata"].get("labels", {}).pop("release", None)
    return stripped


def test_kube_prometheus_stack_component_labels_the_operator_resources(
    rendered: Rendered, tmp_path: Path
) -> None:
    """The component adds release: kube-prometheus-stack to the ServiceMonitor and the
    PrometheusRule, changes nothing else, and the result still validates."""
    overlay = render_overlay(tmp_path / "overlay")
    labelled = {
        r["kind"] for r in overlay.resources if "release" in r["metadata"].get("labels", {})
    }
    assert labelled == CRD_KINDS
    for kind in CRD_KINDS:
        assert overlay.one(kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert without_release(overlay.resources) == rendered.resources
    assert schema_problems(overlay) == []


def test_release_label_follows_an_overlay_patch(tmp_path: Path) -> None:
    """The overlay patch from the README renames the release on both operator resources."""
    overlay = render_overlay(tmp_path / "overlay", patches=[RELEASE_PATCH])
    releases = {kind: overlay.one(kind)["metadata"]["labels"]["release"] for kind in CRD_KINDS}
    assert releases == dict.fromkeys(CRD_KINDS, "prom")


def test_an_overlay_patch_moves_the_runbook_links(tmp_path: Path) -> None:
    """A PrometheusRule generated with --runbook-base, as an overlay patch, replaces every link."""
    directory = tmp_path / "overlay"
    directory.mkdir()
    base = "https://wiki.example.com/aep-flow-exporter"
    generated = directory / "prometheusrule.yaml"
    generator = [str(KUBERNETES / "generate_prometheusrule.py"), "--runbook-base", base]
    result = run_tool([sys.executable, *generator, "--output", str(generated)])
    assert result.returncode == 0, result.stderr
    overlay = render_overlay(directory, patches=[{"path": "prometheusrule.yaml"}])
    urls = [
        rule["annotations"]["runbook_url"]
        for group in overlay.one("PrometheusRule")["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert urls
    assert [url for url in urls if not url.startswith(f"{base}#runbook-")] == []
