"""The shipped rules, Prometheus config and Alertmanager config, checked by the real tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.rules.conftest import (
    ALERTMANAGER_CONFIG,
    ALERTMANAGER_TEMPLATES,
    PROMETHEUS_CONFIG,
    RULE_FILES,
    RULE_TESTS_DIR,
)
from tests.support import run_tool


def test_rule_files_pass_promtool_check_without_warnings(promtool: str) -> None:
    """promtool check rules accepts both rule files with every lint on and prints no warning."""
    result = run_tool([promtool, "check", "rules", "--lint=all", "--lint-fatal", *RULE_FILES])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    assert all(line.startswith(("Checking ", "SUCCESS: ")) for line in lines), result.stdout


def test_prometheus_config_passes_promtool_check(promtool: str) -> None:
    """promtool check config accepts the example Prometheus config and the rules it names."""
    result = run_tool([promtool, "check", "config", PROMETHEUS_CONFIG])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


@pytest.mark.parametrize(
    "test_file", sorted(RULE_TESTS_DIR.glob("*.yml")), ids=lambda path: path.name
)
def test_rule_unit_tests_pass(promtool: str, test_file: Path) -> None:
    """promtool test rules passes every unit-test file."""
    result = run_tool([promtool, "test", "rules", test_file])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alertmanager_config_passes_amtool_check(amtool: str) -> None:
    """amtool check-config accepts the example Alertmanager config and its template."""
    result = run_tool([amtool, "check-config", ALERTMANAGER_CONFIG])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ["alertname=AepFlowFailingRepeatedly", "severity=critical", "sandbox=prod"],
            "oncall-pager",
        ),
        (["alertname=AepFlowExporterDown", "severity=critical"], "oncall-pager"),
        (["alertname=AepFlowRunFailed", "severity=warning", "sandbox=prod"], "team-tickets"),
        (["alertname=AepFlowStale", "severity=warning", "flow_id=f1"], "team-tickets"),
        (["alertname=AepFlowRunSlow", "severity=info"], "low-priority"),
        (["alertname=SomethingElse"], "team-tickets"),
    ],
)
def test_alerts_route_by_severity(amtool: str, labels: list[str], receiver: str) -> None:
    """amtool config routes test sends critical to the pager, warning to tickets, info aside."""
    result = run_tool(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_CONFIG}",
            f"--verify.receivers={receiver}",
            *labels,
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        ("aep.title", "[FIRING:1] AepFlowRunFailed — CRM accounts (prod)"),
        (
            "aep.dashboard_link",
            "http://127.0.0.1:3000/d/aep-flow-detail?var-sandbox=prod&var-flow=f1",
        ),
        (
            "aep.text",
            "*A flow run failed.* (warning)\n"
            'Flow "CRM accounts" (f1) in sandbox prod reported 1 failed run(s) in the last hour.\n'
            "Runbook: https://github.com/aep-flow-exporter/aep-flow-exporter/blob/main/README.md"
            "#runbook-aepflowrunfailed\n"
            "Dashboard: http://127.0.0.1:3000/d/aep-flow-detail?var-sandbox=prod&var-flow=f1",
        ),
    ],
)
def test_notification_templates_render(
    amtool: str, tmp_path: Path, definition: str, expected: str
) -> None:
    """amtool template render turns a firing flow alert into a title, a link and a text."""
    labels = {
        "alertname": "AepFlowRunFailed",
        "severity": "warning",
        "sandbox": "prod",
        "flow_id": "f1",
        "flow_name": "CRM accounts",
    }
    annotations = {
        "summary": "A flow run failed.",
        "description": (
            'Flow "CRM accounts" (f1) in sandbox prod reported 1 failed run(s) in the last hour.'
        ),
        "runbook_url": "https://github.com/aep-flow-exporter/aep-flow-exporter/blob/main/"
        "README.md#runbook-aepflowrunfailed",
        "dashboard_url": "/d/aep-flow-detail?var-sandbox=prod&var-flow=f1",
    }
    data = {
        "receiver": "team-tickets",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": annotations,
                "startsAt": "2024-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": "0123456789abcdef",
            }
        ],
        "groupLabels": {key: labels[key] for key in ("alertname", "sandbox", "flow_id")},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://127.0.0.1:9093",
    }
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data), encoding="utf-8")
    result = run_tool(
        [
            amtool,
            "template",
            "render",
            f"--template.glob={ALERTMANAGER_TEMPLATES}/*.tmpl",
            f'--template.text={{{{ template "{definition}" . }}}}',
            f"--template.data={data_file}",
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == expected
