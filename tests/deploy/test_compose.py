"""deploy/compose.yaml: accepted by docker-compose, and everything it mounts or builds exists."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from exporter.config import ENV_PREFIX
from exporter.durations import parse_duration
from tests.support import require_tool, run_tool

from .conftest import (
    DEPLOY,
    REPO,
    load_settings_from,
    port_of,
    unknown_setting_names,
)

SERVICES = {"exporter", "prometheus", "alertmanager", "grafana"}


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of a service's bind mounts, host paths as written."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def host_path(source: str) -> Path:
    """A compose path as the file means it: relative to deploy/."""
    return (DEPLOY / source).resolve()


def mounted_file(compose: dict[str, Any], service: str, target: str) -> Path:
    """The repository file or directory a service mounts at target (it must exist)."""
    for source, mounted_at in bind_mounts(compose["services"][service]):
        if mounted_at == target:
            path = host_path(source)
            assert path.exists(), f"{path.relative_to(REPO)} does not exist yet"
            return path
    raise AssertionError(f"{service} mounts nothing at {target}")


def test_docker_compose_accepts_the_file() -> None:
    """`docker-compose config` validates and renders the stack (no Docker engine needed)."""
    docker_compose = require_tool("docker-compose")
    result = run_tool([docker_compose, "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"])
    assert result.returncode == 0, result.stderr


def test_stack_has_the_four_services(compose: dict[str, Any]) -> None:
    """The stack runs the exporter, Prometheus, Alertmanager and Grafana."""
    assert set(compose["services"]) == SERVICES


def test_every_mounted_or_built_path_exists(compose: dict[str, Any]) -> None:
    """Each bind-mounted path, build context and Dockerfile is in the repository."""
    wanted = []
    for name, service in sorted(compose["services"].items()):
        if "build" in service:
            context = host_path(service["build"]["context"])
            wanted += [(name, context), (name, context / service["build"]["dockerfile"])]
        wanted += [(name, host_path(source)) for source, _ in bind_mounts(service)]
    missing = [f"{name}: {path.relative_to(REPO)}" for name, path in wanted if not path.exists()]
    assert missing == [], "missing from the repository:\n" + "\n".join(missing)


def test_third_party_images_are_pinned(compose: dict[str, Any]) -> None:
    """Every pulled image names a version tag, never latest."""
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        _, sep, tag = service["image"].rpartition(":")
        assert sep, f"{name}: {service['image']} has no tag"
        assert tag != "latest", name
        assert tag.lstrip("v")[:1].isdigit(), f"{name}: {tag} is not a version"


def test_exporter_environment_names_real_settings_that_load(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """The exporter's environment uses real setting names, loads, and matches its ports."""
    exporter = compose["services"]["exporter"]
    env = {name: str(value) for name, value in exporter["environment"].items()}
    assert unknown_setting_names(env) == []
    env[f"{ENV_PREFIX}CLIENT_IDS"] = ""  # as `${AEP_EXPORTER_CLIENT_IDS:-}` expands when unset
    settings = load_settings_from(env, tmp_path)
    published = {int(port.rpartition(":")[2]) for port in exporter["ports"]}
    assert published == {port_of(settings.listen_address), port_of(settings.metrics_listen_address)}
    assert [p for p in exporter["ports"] if p.endswith(f":{port_of(settings.listen_address)}")]


def test_exporter_keeps_state_on_a_named_volume(compose: dict[str, Any]) -> None:
    """The state file's directory is a named volume, not the container's writable layer."""
    exporter = compose["services"]["exporter"]
    state_dir = str(PurePosixPath(exporter["environment"][f"{ENV_PREFIX}STATE_PATH"]).parent)
    named = {
        target: source
        for source, target, *_ in (v.split(":") for v in exporter["volumes"])
        if not source.startswith((".", "/"))
    }
    assert named[state_dir] in compose["volumes"]


def test_exporter_mounts_the_example_catalogue_read_only(compose: dict[str, Any]) -> None:
    """The catalogue setting points at the example catalogue, mounted read-only."""
    exporter = compose["services"]["exporter"]
    target = exporter["environment"][f"{ENV_PREFIX}CATALOGUE_PATH"]
    assert f"./catalogue.example.yaml:{target}:ro" in exporter["volumes"]


def test_stop_grace_outlasts_the_shutdown_grace(compose: dict[str, Any]) -> None:
    """Compose waits longer than the exporter's shutdown grace before SIGKILL."""
    exporter = compose["services"]["exporter"]
    grace = parse_duration(exporter["environment"][f"{ENV_PREFIX}SHUTDOWN_GRACE"])
    assert parse_duration(exporter["stop_grace_period"]) >= grace + 10


def test_prometheus_scrapes_the_exporter_and_loads_the_mounted_rules(
    compose: dict[str, Any],
) -> None:
    """deploy/prometheus/prometheus.yml scrapes exporter:<metrics port> and reads rules/*.yml."""
    config_path = mounted_file(compose, "prometheus", "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    metrics = compose["services"]["exporter"]["environment"][f"{ENV_PREFIX}METRICS_LISTEN_ADDRESS"]
    targets = [
        target
        for job in config.get("scrape_configs", [])
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    ]
    assert f"exporter:{port_of(metrics)}" in targets
    rules_mount = mounted_file(compose, "prometheus", "/etc/prometheus/rules")
    patterns = config.get("rule_files", [])
    # Relative rule_files resolve against the config file's directory, in the repo and container.
    resolved = [PurePosixPath("/etc/prometheus", pattern) for pattern in patterns]
    assert any(p.parent == PurePosixPath("/etc/prometheus/rules") for p in resolved), patterns
    assert list(rules_mount.glob("*.yml")), "no rule files in deploy/prometheus/rules yet"


def test_prometheus_alerts_the_alertmanager_service(compose: dict[str, Any]) -> None:
    """Prometheus sends alerts to the compose alertmanager service."""
    config_path = mounted_file(compose, "prometheus", "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    targets = [
        target
        for manager in config.get("alerting", {}).get("alertmanagers", [])
        for static in manager.get("static_configs", [])
        for target in static.get("targets", [])
    ]
    assert "alertmanager:9093" in targets


def test_alertmanager_config_is_mounted(compose: dict[str, Any]) -> None:
    """Alertmanager reads deploy/alertmanager/alertmanager.yml."""
    path = mounted_file(compose, "alertmanager", "/etc/alertmanager/alertmanager.yml")
    assert "route" in yaml.safe_load(path.read_text(encoding="utf-8"))


def test_grafana_reads_prometheus_and_the_mounted_dashboards(compose: dict[str, Any]) -> None:
    """Grafana's provisioning points at the prometheus service and the mounted dashboards."""
    provisioning = mounted_file(compose, "grafana", "/etc/grafana/provisioning")
    mounted_file(compose, "grafana", "/var/lib/grafana/dashboards")
    datasources = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    urls = [source.get("url") for source in datasources["datasources"]]
    assert "http://prometheus:9090" in urls
    providers = yaml.safe_load(
        (provisioning / "dashboards" / "aep-flow-exporter.yml").read_text(encoding="utf-8")
    )
    paths = [provider["options"]["path"] for provider in providers["providers"]]
    assert "/var/lib/grafana/dashboards" in paths
