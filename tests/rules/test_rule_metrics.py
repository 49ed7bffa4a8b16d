"""Static checks of the rule files: every name a rule reads exists, windows, labels, annotations."""

from __future__ import annotations

import re
from typing import Any

import pytest

from exporter.metrics.families import exposed_sample_names
from tests.rules.conftest import REPO, Rule, load_rule_tests
from tests.rules.promql_names import metric_names, range_windows, template_queries

RUNBOOK_BASE = "https://github.com/aep-flow-exporter/aep-flow-exporter/blob/main/README.md"
FLOW_DASHBOARD = (
    "/d/aep-flow-detail?var-sandbox={{ $labels.sandbox | urlquery }}"
    "&var-flow={{ $labels.flow_id | urlquery }}"
)
OTHER_DASHBOARDS = {"/d/aep-flow-overview", "/d/aep-flow-exporter"}
INFO_JOIN = "* on (sandbox, flow_id) group_left (flow_name, owner)"
MIN_WINDOW_SECONDS = 300  # four scrape intervals of up to 1m, rounded up


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="aep-flow-exporter"} == 0', {"up"}),
        (
            "max without (instance, pod) (aep_flow_runs_total)",
            {"aep_flow_runs_total"},
        ),
        (
            'sum by (job, reason) (increase(x_total{reason!="a b"}[15m])) > on () group_left t:h:r',
            {"x_total", "t:h:r"},
        ),
        (
            "topk by (sandbox, flow_id) (1, max without (instance, pod) (aep_flow_info))",
            {"aep_flow_info"},
        ),
        ("histogram_quantile(0.95, rate(a_bucket[7d])) >= 0", {"a_bucket"}),
        ("time() - max_over_time(ts[7d]) > bool 1e3 unless absent(b) or vector(1)", {"ts", "b"}),
        ('m offset 1h and {__name__="n", x="y"} # a comment naming c', {"m", "n"}),
        ("a:b:c * on () group_left d:e:f", {"a:b:c", "d:e:f"}),
        ("rate(x[5m:1m]) + Inf - NaN", {"x"}),
    ],
)
def test_metric_names_are_read_from_expressions(expr: str, names: set[str]) -> None:
    """The scanner finds selected series and skips functions, keywords and label names."""
    assert metric_names(expr) == names


def test_range_windows_are_read_from_expressions() -> None:
    """The scanner reads range and subquery windows in seconds and ignores offsets."""
    assert range_windows(
        "increase(x[1h]) + rate(y[7d]) + max_over_time(z[1h30m:5m] offset 2d)"
    ) == [
        3600.0,
        604800.0,
        5400.0,
    ]


def test_template_queries_are_read_from_annotations() -> None:
    """Queries in alert templates are found, with printf's %q placeholders filled in."""
    template = (
        '{{ with query "a:b:c" }}{{ . | first | value }}{{ end }} and '
        '{{ with printf "d:e:f{sandbox=%q}" $labels.sandbox | query }}x{{ end }}'
    )
    assert template_queries(template) == ["a:b:c", 'd:e:f{sandbox=""}']
    assert metric_names(template_queries(template)[1]) == {"d:e:f"}


def names_read(rules: list[Rule]) -> dict[str, set[str]]:
    """The series names each rule reads (expression and template queries), by rule name."""
    read: dict[str, set[str]] = {}
    for rule in rules:
        exprs = [rule.expr]
        for annotation in rule.body.get("annotations", {}).values():
            exprs.extend(template_queries(annotation))
        read[rule.name] = set().union(*(metric_names(expr) for expr in exprs))
    return read


def unknown_names(rules: list[Rule]) -> dict[str, list[str]]:
    """Names rules read that are neither declared nor `up` nor recorded, by rule name."""
    recorded = {rule.name for rule in rules if "record" in rule.body}
    known = exposed_sample_names() | {"up"} | recorded
    read = names_read(rules)
    return {name: sorted(names - known) for name, names in read.items() if names - known}


def test_every_metric_a_rule_reads_exists(rules: list[Rule]) -> None:
    """Each name a rule reads (expression or template query) is exposed, `up`, or recorded."""
    assert unknown_names(rules) == {}
    # The scan is not vacuous: the rules read both flow and exporter families.
    everything = set().union(*names_read(rules).values())
    assert {"aep_flow_runs_total", "aep_exporter_store_ready", "up"} <= everything


def test_a_rule_reading_an_undeclared_metric_is_reported() -> None:
    """A rule naming a series no family declares (a stale name after a rename) fails the check."""
    rule = Rule(
        "alerts.yml",
        "aep_flow_alerts",
        {
            "alert": "AepFlowRenamed",
            "expr": "increase(aep_flow_run_total[1h]) > 0 and aep_flow_info",
            "annotations": {"description": '{{ with query "aep_exporter_ready" }}x{{ end }}'},
        },
    )
    assert unknown_names([rule]) == {"AepFlowRenamed": ["aep_exporter_ready", "aep_flow_run_total"]}


def test_every_window_is_at_least_five_minutes(rules: list[Rule]) -> None:
    """No range or subquery window is shorter than four scrape intervals (Prometheus 3 safe)."""
    short = {
        rule.name: windows
        for rule in rules
        if (windows := [w for w in range_windows(rule.expr) if w < MIN_WINDOW_SECONDS])
    }
    assert short == {}


def test_recording_rules_follow_the_naming_convention(rules: list[Rule]) -> None:
    """Recorded series are named level:metric:operations at the aep_flow level."""
    recorded = [rule.name for rule in rules if "record" in rule.body]
    assert recorded
    assert [n for n in recorded if not re.fullmatch(r"aep_flow:[a-z0-9_]+:[a-z0-9_]+", n)] == []
    assert len(recorded) == len(set(recorded))


def test_every_threshold_is_used(rules: list[Rule]) -> None:
    """Each threshold series is read by an alert or a derived threshold."""
    thresholds = {r.name for r in rules if r.name.startswith("aep_flow:threshold:")}
    read = set().union(*(metric_names(r.expr) for r in rules))
    assert thresholds - read == set()


def test_alerts_carry_severity_and_annotations(alerts: list[Rule]) -> None:
    """Every alert has a severity and summary, description, runbook and dashboard links."""
    for rule in alerts:
        assert rule.body["labels"]["severity"] in {"critical", "warning", "info"}, rule.name
        annotations = rule.body["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url", "dashboard_url"}
        assert "{{" not in annotations["summary"], rule.name
        assert annotations["summary"].endswith("."), rule.name
        assert "{{" in annotations["description"], rule.name
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#runbook-{rule.name.lower()}"


def test_flow_alerts_name_the_flow(alerts: list[Rule]) -> None:
    """Per-flow alerts join aep_flow_info for the flow's name and link the flow's dashboard."""
    flow_alerts = [rule for rule in alerts if rule.group == "aep_flow_alerts"]
    assert flow_alerts
    for rule in flow_alerts:
        assert INFO_JOIN in " ".join(rule.expr.split()), rule.name
        assert rule.body["annotations"]["dashboard_url"] == FLOW_DASHBOARD, rule.name
        description = rule.body["annotations"]["description"]
        assert "$labels.flow_name" in description, rule.name
        assert "$labels.sandbox" in description, rule.name
    for rule in alerts:
        if rule.group != "aep_flow_alerts":
            assert rule.body["annotations"]["dashboard_url"] in OTHER_DASHBOARDS, rule.name


def test_every_alert_fires_and_stays_silent_in_unit_tests(alerts: list[Rule]) -> None:
    """The promtool unit tests hold, for every alert, a case where it fires and one where not."""
    fires: set[str] = set()
    silent: set[str] = set()
    for test_file in load_rule_tests().values():
        for group in test_file["tests"]:
            case: dict[str, Any]
            for case in group.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule.name for rule in alerts}
    assert names - fires == set()
    assert names - silent == set()


def test_every_recording_rule_is_checked_by_value(rules: list[Rule]) -> None:
    """Each recorded series is read by a promql_expr_test (thresholds by one regex selector)."""
    exprs = [
        case["expr"]
        for test_file in load_rule_tests().values()
        for group in test_file["tests"]
        for case in group.get("promql_expr_test", [])
    ]
    read = set().union(*(metric_names(e) for e in exprs if "__name__=~" not in e))
    all_thresholds = '{__name__=~"aep_flow:threshold:.+"}' in exprs
    unchecked = {
        rule.name
        for rule in rules
        if "record" in rule.body
        and rule.name not in read
        and not (all_thresholds and rule.name.startswith("aep_flow:threshold:"))
    }
    assert unchecked == set()


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_has_a_runbook_section_per_alert(alerts: list[Rule]) -> None:
    """README.md has a heading whose anchor each alert's runbook_url points at."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    anchors = {github_anchor(m) for m in re.findall(r"^#+ (.+)$", readme, flags=re.MULTILINE)}
    wanted = {rule.body["annotations"]["runbook_url"].split("#", 1)[1] for rule in alerts}
    assert wanted - anchors == set()
