"""Grafana provisioning files: the Prometheus data source and the dashboard file provider."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "grafana" / "provisioning"
DASHBOARDS_PATH = "/var/lib/grafana/dashboards"


def test_prometheus_datasource() -> None:
    """One default Prometheus data source, uid `prometheus`, at http://prometheus:9090."""
    document = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert document["apiVersion"] == 1
    (source,) = document["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["access"] == "proxy"
    assert source["isDefault"] is True
    # $__rate_interval is derived from it; it must look like a Prometheus duration.
    assert source["jsonData"]["timeInterval"].endswith("s")


def test_dashboard_provider() -> None:
    """A file provider loads /var/lib/grafana/dashboards into the folder "AEP dataflows"."""
    document = yaml.safe_load((PROVISIONING / "dashboards" / "aep-flow-exporter.yml").read_text())
    assert document["apiVersion"] == 1
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "AEP dataflows"
    assert provider["options"]["path"] == DASHBOARDS_PATH
    assert provider["allowUiUpdates"] is False


def test_compose_mounts_the_dashboards_where_the_provider_reads() -> None:
    """The compose file mounts the dashboards and provisioning where Grafana reads them."""
    compose = ROOT / "deploy" / "compose.yaml"
    if not compose.is_file():
        pytest.skip("deploy/compose.yaml not present")
    volumes = yaml.safe_load(compose.read_text())["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{DASHBOARDS_PATH}:ro" in volumes
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
