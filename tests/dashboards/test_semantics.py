"""Key panel queries give the right numbers on synthetic series, evaluated by the real promtool.

The flow CRM is served by two replicas with identical numbers (protocol notes §18.15): every
result below would double if a query summed them instead of folding them. The flow "rollout" moves
from one pod to its replacement mid-window, the new pod carrying the persisted counters: its runs
count whole only when the fold comes before increase().
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.dashboards.queries import fed_queries, substitute_variables
from tests.support import require_tool, run_tool

REPLICAS = (
    'instance="10.0.0.1:9477", pod="exporter-a"',
    'instance="10.0.0.2:9477", pod="exporter-b"',
)
JOB = 'job="aep"'
CRM = 'sandbox="prod", flow_id="crm"'
WEB = 'sandbox="prod", flow_id="web"'
NEW = 'sandbox="dev", flow_id="new"'
ROLLOUT = 'sandbox="prod", flow_id="rollout"'
PAUSED = 'sandbox="prod", flow_id="paused"'


def info(flow: str, name: str, source: str = "") -> str:
    """An aep_flow_info selector for a flow with this name and source, other fields empty."""
    return (
        f'aep_flow_info{{{flow}, flow_name="{name}", owner="", source="{source}", '
        'flow_severity="", ims_org=""}'
    )


# (series without instance/job labels, promtool values), minutes 0..10. CRM is on both replicas.
CRM_SERIES = [
    (info(CRM, "CRM accounts", "Amazon S3"), "1x10"),
    (f'aep_flow_runs_total{{{CRM}, status="success"}}', "0+3x10"),
    (f'aep_flow_runs_total{{{CRM}, status="failed"}}', "0+1x10"),
    (f'aep_flow_run_errors_total{{{CRM}, error_code="CONNECTOR-2001-500"}}', "0+1x10"),
    (f'aep_flow_run_errors_total{{{CRM}, error_code="133"}}', "0+2x10"),
    (f"aep_flow_input_records_total{{{CRM}}}", "0+4x10"),
    (f"aep_flow_output_records_total{{{CRM}}}", "0+3x10"),
    (f"aep_flow_last_run_success{{{CRM}}}", "0x10"),
    # Last success at t=500 s; expected every 60 s: overdue at t=600 s.
    (f'aep_flow_last_run_timestamp_seconds{{{CRM}, status="success"}}', "500x10"),
    (f"aep_flow_expected_interval_seconds{{{CRM}}}", "60x10"),
    (f"aep_flow_enabled{{{CRM}}}", "1x10"),
]
WEB_SERIES = [
    (info(WEB, "Web orders"), "1x10"),
    (f"aep_flow_last_run_success{{{WEB}}}", "1x10"),
    # Last success at t=590 s; expected hourly: on time.
    (f'aep_flow_last_run_timestamp_seconds{{{WEB}, status="success"}}', "590x10"),
    (f"aep_flow_expected_interval_seconds{{{WEB}}}", "3600x10"),
]
NEW_SERIES = [
    # Catalogued, never ran: overdue.
    (info(NEW, "New feed"), "1x10"),
    (f"aep_flow_expected_interval_seconds{{{NEW}}}", "3600x10"),
    # Would be overdue, but Flow Service reports it disabled: not overdue.
    (info(PAUSED, "Paused feed"), "1x10"),
    (f'aep_flow_last_run_timestamp_seconds{{{PAUSED}, status="success"}}', "0x10"),
    (f"aep_flow_expected_interval_seconds{{{PAUSED}}}", "60x10"),
    (f"aep_flow_enabled{{{PAUSED}}}", "0x10"),
]
# (series, values on the first pod, values on the second). Rollout: the second replaces the first
# from minute 6. The registration poller ran on the second replica until 300 s, then on the first.
PER_REPLICA_SERIES = [
    (info(ROLLOUT, "Rollout"), "1x5 _x5", "_x6 1x4"),
    (f'aep_flow_runs_total{{{ROLLOUT}, status="failed"}}', "0+1x5 _x5", "_x6 6+1x4"),
    (
        'aep_exporter_poll_last_success_timestamp_seconds{task="registration"}',
        "_x5 300+60x5",
        "0+60x5 300x5",
    ),
]

ALL_FLOWS = {"sandbox": ".*", "flow": ".*"}
ONLY_CRM = {"sandbox": "prod", "flow": "crm"}
# The cluster variable at All: the synthetic series have no cluster label, as without one.
WINDOWS = {"__rate_interval": "15m", "__range": "15m", "__interval": "1m", "cluster": ".*"}
# (dashboard uid, panel title, refId, variables, expected samples as (labels, value)).
CASES: list[tuple[str, str, str, dict[str, str], list[tuple[str, float]]]] = [
    ("aep-flow-overview", "Flows", "A", ALL_FLOWS, [("{}", 5)]),
    ("aep-flow-overview", "Newest run failed", "A", ALL_FLOWS, [("{}", 1)]),
    ("aep-flow-overview", "Overdue flows", "A", ALL_FLOWS, [("{}", 2)]),
    ("aep-flow-overview", "Success ratio", "A", ONLY_CRM, [("{}", 0.75)]),
    (
        "aep-flow-overview",
        "Failed runs by flow",
        "A",
        ALL_FLOWS,
        [
            ('{sandbox="prod", flow_id="crm", flow_name="CRM accounts", source="Amazon S3"}', 10),
            ('{sandbox="prod", flow_id="rollout", flow_name="Rollout"}', 10),
        ],
    ),
    (
        "aep-flow-overview",
        "Top failing flows",
        "A",
        ALL_FLOWS,
        [
            ('{sandbox="prod", flow_id="crm", flow_name="CRM accounts", source="Amazon S3"}', 10),
            ('{sandbox="prod", flow_id="rollout", flow_name="Rollout"}', 10),
        ],
    ),
    ("aep-flow-overview", "Flow health", "F", ONLY_CRM, [(f"{{{JOB}, {CRM}}}", 100 / 60)]),
    ("aep-flow-overview", "Flow health", "G", ONLY_CRM, [(f"{{{JOB}, {CRM}}}", 0.75)]),
    ("aep-flow-overview", "Flow health", "H", ONLY_CRM, [(f"{{{JOB}, {CRM}}}", 40)]),
    (
        "aep-flow-overview",
        "Flow health",
        "J",
        ALL_FLOWS,
        [(f'{{{JOB}, {CRM}, error_code="133"}}', 20)],
    ),
    (
        "aep-flow-detail",
        "Runs by outcome",
        "A",
        ONLY_CRM,
        [('{status="failed"}', 10), ('{status="success"}', 30)],
    ),
    ("aep-flow-detail", "Record loss", "A", ONLY_CRM, [("{}", 0.25)]),
    ("aep-flow-detail", "Since last success", "A", ONLY_CRM, [(f"{{{JOB}, {CRM}}}", 100)]),
    # The newest success of any replica: 600 s at minute 10.
    (
        "aep-flow-exporter",
        "Since last successful cycle",
        "A",
        {"instance": ".*"},
        [('{task="registration"}', 0)],
    ),
]


def input_series() -> list[dict[str, str]]:
    """The synthetic series with scrape labels: CRM on both replicas, others per replica."""
    out = []
    for replicas, series in ((REPLICAS, CRM_SERIES), (REPLICAS[:1], WEB_SERIES + NEW_SERIES)):
        for replica in replicas:
            for selector, values in series:
                labelled = selector.replace("{", f"{{{JOB}, {replica}, ", 1)
                out.append({"series": labelled, "values": values})
    for selector, first_pod, second_pod in PER_REPLICA_SERIES:
        for replica, pod_values in zip(REPLICAS, (first_pod, second_pod), strict=True):
            labelled = selector.replace("{", f"{{{JOB}, {replica}, ", 1)
            out.append({"series": labelled, "values": pod_values})
    return out


def test_key_queries_collapse_replicas_and_join_names(tmp_path: Path) -> None:
    """Counts, ratios, the name join and the table's columns are right across replicas and pods."""
    promtool = require_tool("promtool")
    exprs = {(q.dashboard_uid, q.panel_title, q.ref_id): q.expr for q in fed_queries()}
    tests: list[dict[str, Any]] = [
        {
            "expr": substitute_variables(exprs[uid, title, ref], {**WINDOWS, **variables}),
            "eval_time": "10m",
            "exp_samples": [{"labels": labels, "value": value} for labels, value in samples],
        }
        for uid, title, ref, variables, samples in CASES
    ]
    document = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input_series(), "promql_expr_test": tests}],
    }
    path = tmp_path / "dashboard-semantics.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run_tool([promtool, "test", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
