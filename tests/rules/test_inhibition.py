"""Inhibition in the example Alertmanager config, checked with a real Alertmanager on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.rules.conftest import ALERTMANAGER_CONFIG

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 20.0
SETTLE_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(url: str, body: object | None = None) -> Any:
    """GET (or POST `body` as JSON to) a loopback URL and decode the JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return json.loads(text) if text else None


def wait_for(condition: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def alertmanager_url(alertmanager_binary: str, tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager with the shipped config, listening on loopback only."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            alertmanager_binary,
            f"--config.file={ALERTMANAGER_CONFIG}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        if process.poll() is not None:
            log.flush()
            pytest.fail(f"Alertmanager exited: {(tmp_path / 'alertmanager.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    try:
        wait_for(ready, "Alertmanager to be ready", READY_TIMEOUT)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


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
