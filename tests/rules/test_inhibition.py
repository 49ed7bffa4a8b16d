"""Inhibition in the example Alertmanager config, checked with a real Alertmanager on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.rules.conftest import ALERTMANAGER_CONFIG
from tests.support import alertmanager_process, http_json, wait_for

pytestmark = pytest.mark.e2e

SETTLE_TIMEOUT = 10.0


@pytest.fixture
def alertmanager_url(alertmanager_binary: str, tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager with the shipped config, listening on loopback only."""
    with alertmanager_process(alertmanager_binary, ALERTMANAGER_CONFIG, tmp_path) as process:
        yield process.url


def alert(alertname: str, severity: str, **labels: str) -> dict[str, Any]:
    """An active alert as Prometheus posts it."""
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": alertname, "severity": severity, **labels},
        "annotations": {"summary": alertname},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }


def inhibited(url: str) -> dict[tuple[str, str], bool]:
    """(alertname, flow_id or "-") -> whether Alertmanager reports it inhibited."""
    return {
        (item["labels"]["alertname"], item["labels"].get("flow_id", "-")): bool(
            item["status"]["inhibitedBy"]
        )
        for item in http_json(f"{url}/api/v2/alerts")
    }


@pytest.mark.parametrize("cause", ["AepFlowExporterDown", "AepFlowExporterStoreNotReady"])
def test_exporter_trouble_silences_staleness(alertmanager_url: str, cause: str) -> None:
    """An exporter that is down or cannot write inhibits staleness and no-notification alerts."""
    http_json(
        f"{alertmanager_url}/api/v2/alerts",
        [
            alert(cause, "critical", job="aep-flow-exporter", instance="exporter:9478"),
            alert("AepFlowStale", "warning", sandbox="prod", flow_id="f1"),
            alert("AepFlowNeverReported", "warning", sandbox="prod", flow_id="n1"),
            alert("AepFlowRunStuck", "warning", sandbox="prod", flow_id="s1"),
            alert("AepFlowExporterNoNotifications", "warning", job="aep-flow-exporter"),
            alert("AepFlowRunFailed", "warning", sandbox="prod", flow_id="f2"),
        ],
    )
    expected = {
        (cause, "-"): False,
        ("AepFlowStale", "f1"): True,
        ("AepFlowNeverReported", "n1"): True,
        ("AepFlowRunStuck", "s1"): True,
        ("AepFlowExporterNoNotifications", "-"): True,
        ("AepFlowRunFailed", "f2"): False,
    }
    wait_for(lambda: inhibited(alertmanager_url) == expected, "inhibition", SETTLE_TIMEOUT)


def test_flow_level_inhibitions(alertmanager_url: str) -> None:
    """No notifications silences staleness; a flow failing repeatedly or burning fast silences
    its own lesser alerts, not another flow's."""
    http_json(
        f"{alertmanager_url}/api/v2/alerts",
        [
            alert("AepFlowExporterNoNotifications", "warning", job="aep-flow-exporter"),
            alert("AepFlowStale", "warning", sandbox="prod", flow_id="f3"),
            alert("AepFlowFailingRepeatedly", "critical", sandbox="prod", flow_id="f1"),
            alert("AepFlowRunFailed", "warning", sandbox="prod", flow_id="f1"),
            alert("AepFlowRunFailed", "warning", sandbox="prod", flow_id="f2"),
            alert("AepFlowSuccessRatioBelowObjective", "critical", sandbox="dev", flow_id="f4"),
            alert("AepFlowSuccessRatioBelowObjective", "warning", sandbox="prod", flow_id="f4"),
            alert("AepFlowSuccessRatioBelowObjective", "warning", sandbox="dev", flow_id="f4"),
        ],
    )

    def settled() -> bool:
        got = {}
        for item in http_json(f"{alertmanager_url}/api/v2/alerts"):
            labels = item["labels"]
            key = (
                labels["alertname"],
                labels.get("sandbox", "-"),
                labels.get("flow_id", "-"),
                labels["severity"],
            )
            got[key] = bool(item["status"]["inhibitedBy"])
        return got == {
            ("AepFlowExporterNoNotifications", "-", "-", "warning"): False,
            ("AepFlowStale", "prod", "f3", "warning"): True,
            ("AepFlowFailingRepeatedly", "prod", "f1", "critical"): False,
            ("AepFlowRunFailed", "prod", "f1", "warning"): True,
            ("AepFlowRunFailed", "prod", "f2", "warning"): False,
            ("AepFlowSuccessRatioBelowObjective", "dev", "f4", "critical"): False,
            ("AepFlowSuccessRatioBelowObjective", "prod", "f4", "warning"): False,
            ("AepFlowSuccessRatioBelowObjective", "dev", "f4", "warning"): True,
        }

    wait_for(settled, "inhibition", SETTLE_TIMEOUT)
