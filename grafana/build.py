"""Generate the Grafana dashboards in grafana/dashboards/ from plain Python dicts.

Run `python grafana/build.py` after editing this file; `--check` only compares. A test proves the
committed JSON equals what this file produces (tests/dashboards/test_generator.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39  # Grafana 10.4; Grafana 11 migrates it on load.
DATASOURCE: JSON = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["aep", "aep-flow-exporter"]
GRID_WIDTH = 24

OVERVIEW_UID = "aep-flow-overview"
DETAIL_UID = "aep-flow-detail"
EXPORTER_UID = "aep-flow-exporter"
TITLES = {
    OVERVIEW_UID: "AEP dataflows: fleet overview",
    DETAIL_UID: "AEP dataflows: flow detail",
    EXPORTER_UID: "AEP dataflows: exporter health",
}

# What the end-to-end test feeds before it runs every panel query against a real Prometheus.
# Each query below is either expected to return at least one series under this scenario, or
# carries `empty_ok`, the reason it may legitimately come back empty.
FED_SCENARIO = (
    "The exporter runs with deploy/catalogue.example.yaml and Prometheus scrapes it at least once "
    "before the first notification, so a catalogued flow's counters start at 0 and increase() "
    "sees its runs. It then receives successful and failed runs of one catalogued flow (payloads "
    "shaped like the documented seeds: records, bytes, files, activities, error codes), one Adobe "
    "alert FIRING for that flow and no start notification; $sandbox and $flow select that flow, "
    "$instance the exporter. A query is 'filled' when it returns at least one series over a "
    "window that covers the feed and at least two scrapes after it."
)

# Selectors. Per-flow series are folded over replicas before anything else (protocol notes
# §18.15: several replicas may serve the same numbers), increase() included: see flow_counter.
# Every selector also carries CLUSTER: its All value `.*` matches series without the label too,
# so the variable is harmless where Prometheus adds no `cluster` label.
CLUSTER = 'cluster=~"$cluster"'
FLEET = ('sandbox=~"$sandbox"', 'flow_id=~"$flow"')
ONE = ('sandbox="$sandbox"', 'flow_id="$flow"')
INSTANCE = ('instance=~"$instance"',)
SUCCESS = 'status="success"'
FAILED = 'status="failed"'
# Windows of per-flow counters are subqueries over the fold. Graphs use $__rate_interval at the
# default resolution (the evaluation interval, so at least four points); instant stats the
# dashboard range at $__interval; the health table one day (the alerts' and recording rules'
# window) at 5m, which is plenty for an increase and keeps a fleet-wide table cheap.
RATE = "$__rate_interval"
RATE_WINDOW = "$__rate_interval:"
RANGE_WINDOW = "$__range:$__interval"
DAY_WINDOW = "1d:5m"
DURATION_SUM = "aep_flow_run_duration_seconds_sum"
DURATION_COUNT = "aep_flow_run_duration_seconds_count"

DETAIL_LINK = (
    f"/d/{DETAIL_UID}?${{datasource:queryparam}}&${{__url_time_range}}"
    "&var-sandbox=${__data.fields.sandbox}&var-flow=${__data.fields.flow_id}"
)
DETAIL_LINK_FROM_SERIES = (
    f"/d/{DETAIL_UID}?${{datasource:queryparam}}&${{__url_time_range}}"
    "&var-sandbox=${__field.labels.sandbox}&var-flow=${__field.labels.flow_id}"
)

# Grafana's query_result() lists each series as `{flow_id="…",flow_name="…",…} 1 <ms>` with the
# labels sorted by name, so flow_id precedes flow_name: the named groups make the option's value
# the flow id and its text the flow name (Grafana 7.4+ "named text and value capture groups").
FLOW_REGEX = '/flow_id="(?<value>[^"]+)".*flow_name="(?<text>[^"]*)"/'


@dataclass(frozen=True)
class Query:
    """One panel query and what the fed end-to-end scenario leaves in it."""

    expr: str
    legend: str = "__auto"
    instant: bool = False
    fmt: str = "time_series"
    empty_ok: str = ""  # why the fed scenario may leave this query empty; "" = it must not


@dataclass(frozen=True)
class Panel:
    """One Grafana panel before layout: type, words, unit, queries and display options."""

    kind: str
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    width: int
    height: int
    options: JSON = field(default_factory=dict)
    defaults: JSON = field(default_factory=dict)
    custom: JSON = field(default_factory=dict)
    overrides: tuple[JSON, ...] = ()
    transformations: tuple[JSON, ...] = ()


@dataclass(frozen=True)
class Dashboard:
    """One dashboard: identity, variables and titled sections of panels."""

    uid: str
    description: str
    time_from: str
    variables: tuple[JSON, ...]
    sections: tuple[tuple[str, tuple[Panel, ...]], ...]

    @property
    def title(self) -> str:
        """The dashboard's title."""
        return TITLES[self.uid]


# --- PromQL ------------------------------------------------------------------------------------


def selector(metric: str, *matchers: str) -> str:
    """`metric{cluster=~"$cluster", m1, m2}`."""
    return f"{metric}{{{', '.join((CLUSTER, *matchers))}}}"


def per_flow(expr: str) -> str:
    """Collapse replicas that serve the same flow."""
    return f"max without (instance, pod) ({expr})"


def flow_counter(function: str, metric: str, matchers: tuple[str, ...], window: str) -> str:
    """`function` (increase, rate) of a per-flow counter over a subquery of its replica fold.

    Folding first makes one continuous series per flow: a replaced pod is a new series that
    carries the same persisted counters, which max-after-increase would read as a fresh start and
    under-count (the recording rules' aep_flow:*:max do the same fold).
    """
    return f"{function}({per_flow(selector(metric, *matchers))}[{window}])"


def flow_increase(metric: str, matchers: tuple[str, ...], window: str = RATE_WINDOW) -> str:
    """Per-flow increase of a counter over `window`, replicas folded first."""
    return flow_counter("increase", metric, matchers, window)


def with_flow_name(expr: str, matchers: tuple[str, ...]) -> str:
    """Add the `flow_name` and `source` labels from aep_flow_info to per-flow series."""
    info = selector("aep_flow_info", *matchers)
    return (
        f"({expr}) * on (sandbox, flow_id) group_left (flow_name, source) "
        f"group by (sandbox, flow_id, flow_name, source) ({info})"
    )


def unless_disabled(expr: str, matchers: tuple[str, ...]) -> str:
    """Drop flows that Flow Service reports disabled; without aep_flow_enabled, drop none."""
    enabled = per_flow(selector("aep_flow_enabled", *matchers))
    return f"({expr}) unless on (sandbox, flow_id) ({enabled} == 0)"


def newest_completion(matchers: tuple[str, ...]) -> str:
    """Completion time of the flow's newest run, whatever its outcome."""
    newest = selector("aep_flow_last_run_timestamp_seconds", *matchers)
    return f"max without (instance, pod, status) ({newest})"


def since_success(matchers: tuple[str, ...]) -> str:
    """Seconds since the flow's newest successful run completed."""
    newest = selector("aep_flow_last_run_timestamp_seconds", *matchers, SUCCESS)
    return f"time() - max without (instance, pod, status) ({newest})"


def success_ratio(matchers: tuple[str, ...], window: str, by: str) -> str:
    """Successful runs over all completed runs in `window`, aggregated with `by`."""
    ok = flow_increase("aep_flow_runs_total", (*matchers, SUCCESS), window)
    runs = flow_increase("aep_flow_runs_total", matchers, window)
    return f"{by} ({ok}) / {by} ({runs})"


def quantile(q: float, bucket: str, matchers: tuple[str, ...], flow: bool) -> str:
    """Histogram quantile over $__rate_interval; per-flow histograms are folded first."""
    if flow:
        rate = flow_counter("rate", bucket, matchers, RATE_WINDOW)
    else:
        rate = f"rate({selector(bucket, *matchers)}[{RATE}])"
    return f"histogram_quantile({q}, sum by (le) ({rate}))"


# --- field config pieces -----------------------------------------------------------------------


def thresholds(*steps: tuple[str, float | None]) -> JSON:
    """Absolute thresholds; the first step's value is None (the base)."""
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for color, value in steps],
    }


def value_mappings(texts: dict[str, tuple[str, str]]) -> list[JSON]:
    """Map raw values to (text, color)."""
    return [
        {
            "type": "value",
            "options": {
                raw: {"color": color, "index": index, "text": text}
                for index, (raw, (text, color)) in enumerate(texts.items())
            },
        }
    ]


NO_RUNS = {
    "type": "special",
    "options": {"match": "nan", "result": {"index": 0, "text": "no runs"}},
}
OUTCOME_TEXT = {"1": ("OK", "green"), "0": ("FAILED", "red")}
ALERT_TEXT = {"1": ("firing", "red"), "0": ("resolved", "green")}
READY_TEXT = {"1": ("ready", "green"), "0": ("not ready", "red")}
UP_TEXT = {"1": ("up", "green"), "0": ("down", "red")}
ENABLED_TEXT = {"1": ("enabled", "green"), "0": ("disabled", "orange")}
HEALTHY_TEXT = {"1": ("healthy", "green"), "0": ("unhealthy", "red")}
# Why the fed scenario leaves the Adobe-side queries empty.
NO_FLOW_SERVICE = "aep_flow_enabled comes from Flow Service, which the e2e stack does not configure"
NO_ADOBE = (
    "the e2e stack configures no Adobe API (no IMS credentials), so the exporter registers none "
    "of the Adobe self-metrics"
)
LEADER_TEXT = {"1": ("leader", "blue"), "0": ("standby", "text")}


def by_name(name: str, *properties: tuple[str, Any]) -> JSON:
    """A field override matched by display name."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key, "value": value} for key, value in properties],
    }


def fixed_color(name: str, color: str) -> JSON:
    """Always draw series `name` in `color`."""
    return by_name(name, ("color", {"fixedColor": color, "mode": "fixed"}))


OUTCOME_COLORS = (fixed_color("success", "green"), fixed_color("failed", "red"))


def detail_links(url: str) -> list[JSON]:
    """A data link to the flow detail dashboard."""
    return [{"targetBlank": False, "title": "Flow detail", "url": url}]


# --- panel constructors ------------------------------------------------------------------------


def timeseries(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 12,
    height: int = 8,
    bars: bool = False,
    stack: bool = False,
    threshold_line: bool = False,
    defaults: JSON | None = None,
    overrides: tuple[JSON, ...] = (),
) -> Panel:
    """A time series panel: lines, or stacked bars for counts per window."""
    return Panel(
        kind="timeseries",
        title=title,
        description=description,
        unit=unit,
        queries=queries,
        width=width,
        height=height,
        options={
            "legend": {
                "calcs": [],
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        defaults={"color": {"mode": "palette-classic"}, **(defaults or {})},
        custom={
            "drawStyle": "bars" if bars else "line",
            "fillOpacity": 70 if bars else 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if stack else "none"},
            "thresholdsStyle": {"mode": "line" if threshold_line else "off"},
        },
        overrides=overrides,
    )


def stat(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 4,
    height: int = 4,
    steps: tuple[tuple[str, float | None], ...] = (("text", None),),
    mappings: list[JSON] | None = None,
) -> Panel:
    """A single-value panel over instant queries."""
    return Panel(
        kind="stat",
        title=title,
        description=description,
        unit=unit,
        queries=queries,
        width=width,
        height=height,
        options={
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        },
        defaults={
            "color": {"mode": "thresholds"},
            "mappings": mappings or [],
            "thresholds": thresholds(*steps),
        },
    )


def state_timeline(
    title: str,
    description: str,
    query: Query,
    texts: dict[str, tuple[str, str]],
    *,
    width: int = 12,
    height: int = 8,
) -> Panel:
    """A state timeline of 0/1 gauges shown as words."""
    return Panel(
        kind="state-timeline",
        title=title,
        description=description,
        unit="none",
        queries=(query,),
        width=width,
        height=height,
        options={
            "alignValue": "left",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "mergeValues": True,
            "rowHeight": 0.9,
            "showValue": "auto",
            "tooltip": {"mode": "single", "sort": "none"},
        },
        defaults={"color": {"mode": "thresholds"}, "mappings": value_mappings(texts)},
        custom={"fillOpacity": 70, "lineWidth": 0},
    )


def table(
    title: str,
    description: str,
    *queries: Query,
    width: int = 24,
    height: int = 8,
    organize: JSON,
    overrides: tuple[JSON, ...] = (),
    sort_by: str | None = None,
) -> Panel:
    """A table of instant queries merged into one row per series identity."""
    return Panel(
        kind="table",
        title=title,
        description=description,
        unit="none",
        queries=queries,
        width=width,
        height=height,
        options={
            "cellHeight": "sm",
            "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
            "showHeader": True,
            "sortBy": [{"desc": False, "displayName": sort_by}] if sort_by else [],
        },
        defaults={"color": {"mode": "thresholds"}, "thresholds": thresholds(("text", None))},
        custom={"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True},
        overrides=overrides,
        transformations=(
            {"id": "merge", "options": {}},
            {"id": "organize", "options": organize},
        ),
    )


def heatmap(title: str, description: str, query: Query, y_unit: str) -> Panel:
    """A heatmap of pre-bucketed histogram increases (Prometheus `le` buckets)."""
    return Panel(
        kind="heatmap",
        title=title,
        description=description,
        unit="short",
        queries=(query,),
        width=12,
        height=8,
        options={
            "calculate": False,
            "cellGap": 1,
            "color": {
                "exponent": 0.5,
                "fill": "dark-orange",
                "mode": "scheme",
                "reverse": False,
                "scale": "exponential",
                "scheme": "Oranges",
                "steps": 64,
            },
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"mode": "single", "yHistogram": True},
            "yAxis": {"axisPlacement": "left", "reverse": False, "unit": y_unit},
        },
    )


def bargauge(
    title: str, description: str, unit: str, query: Query, *, links: list[JSON], width: int = 12
) -> Panel:
    """A horizontal bar gauge ranking series by their instant value."""
    return Panel(
        kind="bargauge",
        title=title,
        description=description,
        unit=unit,
        queries=(query,),
        width=width,
        height=8,
        options={
            "displayMode": "gradient",
            "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showUnfilled": True,
        },
        defaults={
            "color": {"mode": "thresholds"},
            "links": links,
            "thresholds": thresholds(("orange", None), ("red", 3)),
        },
    )


# --- variables ---------------------------------------------------------------------------------


def datasource_variable() -> JSON:
    """The Prometheus data source every panel uses."""
    return {
        "current": {},
        "description": "Prometheus that scrapes aep-flow-exporter.",
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "type": "datasource",
    }


def query_variable(
    name: str,
    label: str,
    description: str,
    query: str,
    *,
    qry_type: int,
    multi: bool,
    regex: str = "",
    hide: int = 0,
) -> JSON:
    """A Prometheus query variable; multi-valued ones offer All (`.*`)."""
    variable: JSON = {
        "current": {},
        "datasource": DATASOURCE,
        "definition": query,
        "description": description,
        "hide": hide,
        "includeAll": multi,
        "label": label,
        "multi": multi,
        "name": name,
        "options": [],
        # qryType: Grafana's PromVariableQueryType (1 label values, 3 query result).
        "query": {
            "qryType": qry_type,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "refresh": 2,
        "regex": regex,
        "sort": 1,
        "type": "query",
    }
    if multi:
        variable["allValue"] = ".*"
    return variable


def cluster_variable() -> JSON:
    """Clusters of the exporters, where Prometheus labels targets with `cluster`."""
    return query_variable(
        "cluster",
        "Cluster",
        "Label cluster of the exporters' series, where your Prometheus adds one; All also "
        "matches series without it.",
        "label_values(aep_exporter_build_info, cluster)",
        qry_type=1,
        multi=True,
    )


def sandbox_variable(*, multi: bool, hide: int = 0) -> JSON:
    """AEP sandboxes that have flows."""
    return query_variable(
        "sandbox",
        "Sandbox",
        "AEP sandbox (label sandbox of aep_flow_info).",
        f"label_values({selector('aep_flow_info')}, sandbox)",
        qry_type=1,
        multi=multi,
        hide=hide,
    )


def flow_variable(*, multi: bool, hide: int = 0) -> JSON:
    """Flows of the selected sandboxes: flow_name shown, flow_id used."""
    sandbox = f'sandbox{"=~" if multi else "="}"$sandbox"'
    return query_variable(
        "flow",
        "Flow",
        "Flow of the selected sandbox: shows flow_name, selects by flow_id.",
        f"query_result({per_flow(selector('aep_flow_info', sandbox))})",
        qry_type=3,
        multi=multi,
        regex=FLOW_REGEX,
        hide=hide,
    )


def instance_variable() -> JSON:
    """Exporter processes (scrape targets)."""
    return query_variable(
        "instance",
        "Exporter",
        "Exporter scrape target (label instance of aep_exporter_build_info).",
        f"label_values({selector('aep_exporter_build_info')}, instance)",
        qry_type=1,
        multi=True,
    )


# --- dashboards --------------------------------------------------------------------------------


def overview() -> Dashboard:
    """Fleet overview: is every flow running, and which ones fail."""
    ts_success = selector("aep_flow_last_run_timestamp_seconds", *FLEET, SUCCESS)
    expected = per_flow(selector("aep_flow_expected_interval_seconds", *FLEET))
    failed_by_flow = (
        f"sum by (sandbox, flow_id) ({flow_increase('aep_flow_runs_total', (*FLEET, FAILED))}) > 0"
    )
    flow_legend = "{{flow_name}} ({{sandbox}})"
    top_failing = (
        "topk(10, "
        + with_flow_name(
            "sum by (sandbox, flow_id) "
            f"({flow_increase('aep_flow_runs_total', (*FLEET, FAILED), RANGE_WINDOW)}) > 0",
            FLEET,
        )
        + ")"
    )
    health = table(
        "Flow health",
        "One row per flow: its source type, whether Flow Service reports it enabled, the newest "
        "run's outcome and completion, time since the last success against the expected interval "
        "(catalogue, else Flow Service schedule; above 1x means overdue), and the last day's "
        "success ratio, records and most frequent error code. Click a flow name for its detail. "
        "Counters born with a flow's first notification start at that run, so the first run of an "
        "uncatalogued flow and the first run with a new error code are not in increase()-based "
        "columns.",
        Query(per_flow(selector("aep_flow_info", *FLEET)), instant=True, fmt="table"),
        Query(per_flow(selector("aep_flow_last_run_success", *FLEET)), instant=True, fmt="table"),
        Query(f"{newest_completion(FLEET)} * 1000", instant=True, fmt="table"),
        Query(since_success(FLEET), instant=True, fmt="table"),
        Query(expected, instant=True, fmt="table"),
        Query(f"({since_success(FLEET)}) / {expected}", instant=True, fmt="table"),
        Query(success_ratio(FLEET, DAY_WINDOW, "sum without (status)"), instant=True, fmt="table"),
        Query(
            flow_increase("aep_flow_input_records_total", FLEET, DAY_WINDOW),
            instant=True,
            fmt="table",
        ),
        Query(
            flow_increase("aep_flow_output_records_total", FLEET, DAY_WINDOW),
            instant=True,
            fmt="table",
        ),
        Query(
            "topk by (sandbox, flow_id) "
            f"(1, {flow_increase('aep_flow_run_errors_total', FLEET, DAY_WINDOW)} > 0)",
            instant=True,
            fmt="table",
            empty_ok="an error_code series is born at 1 with the first failed run that reports "
            "the code, so increase() needs a second run with that code after a scrape",
        ),
        Query(
            per_flow(selector("aep_flow_enabled", *FLEET)),
            instant=True,
            fmt="table",
            empty_ok=NO_FLOW_SERVICE,
        ),
        height=9,
        sort_by="Last run",
        organize={
            "excludeByName": {
                "Time": True,
                "Value #A": True,
                "Value #J": True,
                "ims_org": True,
                "job": True,
            },
            "includeByName": {},
            "indexByName": {
                "flow_name": 0,
                "sandbox": 1,
                "flow_id": 2,
                "source": 3,
                "owner": 4,
                "flow_severity": 5,
                "Value #K": 6,
                "Value #B": 7,
                "Value #C": 8,
                "Value #D": 9,
                "Value #E": 10,
                "Value #F": 11,
                "Value #G": 12,
                "Value #H": 13,
                "Value #I": 14,
                "error_code": 15,
            },
            "renameByName": {
                "flow_name": "Flow",
                "source": "Source",
                "owner": "Owner",
                "flow_severity": "Severity",
                "Value #K": "Enabled",
                "Value #B": "Last run",
                "Value #C": "Last completed",
                "Value #D": "Since last success",
                "Value #E": "Expected every",
                "Value #F": "Since success / expected",
                "Value #G": "Success 1d",
                "Value #H": "Records in 1d",
                "Value #I": "Records out 1d",
                "error_code": "Top error code 1d",
            },
        },
        overrides=(
            by_name("Flow", ("links", detail_links(DETAIL_LINK))),
            by_name(
                "Last run",
                ("mappings", value_mappings(OUTCOME_TEXT)),
                ("custom.cellOptions", {"type": "color-text"}),
            ),
            by_name(
                "Enabled",
                ("mappings", value_mappings(ENABLED_TEXT)),
                ("custom.cellOptions", {"type": "color-text"}),
            ),
            by_name("Last completed", ("unit", "dateTimeFromNow")),
            by_name("Since last success", ("unit", "s")),
            by_name("Expected every", ("unit", "s")),
            by_name(
                "Since success / expected",
                ("unit", "suffix:x"),
                ("decimals", 1),
                ("thresholds", thresholds(("green", None), ("orange", 1), ("red", 2))),
                ("custom.cellOptions", {"type": "color-text"}),
            ),
            by_name(
                "Success 1d",
                ("unit", "percentunit"),
                ("mappings", [NO_RUNS]),
                ("thresholds", thresholds(("red", None), ("orange", 0.95), ("green", 0.99))),
                ("custom.cellOptions", {"type": "color-text"}),
            ),
            by_name("Records in 1d", ("unit", "short")),
            by_name("Records out 1d", ("unit", "short")),
        ),
    )
    fleet = (
        stat(
            "Flows",
            "Flows the exporter tracks (catalogued, or heard from within the flow TTL).",
            "short",
            Query(f"count({per_flow(selector('aep_flow_info', *FLEET))})", instant=True),
        ),
        stat(
            "Newest run failed",
            "Flows whose newest completed run failed (aep_flow_last_run_success = 0).",
            "short",
            Query(
                f"count({per_flow(selector('aep_flow_last_run_success', *FLEET))} == 0) "
                "or vector(0)",
                instant=True,
            ),
            steps=(("green", None), ("red", 1)),
        ),
        stat(
            "Overdue flows",
            "Flows with an expected interval (catalogue or Flow Service schedule) whose last "
            "success is older than it, or that never succeeded; flows Flow Service reports "
            "disabled are not overdue.",
            "short",
            Query(
                "count("
                + unless_disabled(
                    f"({since_success(FLEET)}) > {expected} or "
                    f"({expected} unless on (sandbox, flow_id) {ts_success})",
                    FLEET,
                )
                + ") or vector(0)",
                instant=True,
            ),
            steps=(("green", None), ("orange", 1)),
        ),
        stat(
            "Adobe alerts firing",
            "Adobe-side flow alerts (delay, error rate) currently FIRING.",
            "short",
            Query(
                f"count({per_flow(selector('aep_flow_alert_active', *FLEET))} == 1) or vector(0)",
                instant=True,
            ),
            steps=(("green", None), ("red", 1)),
        ),
        stat(
            "Runs in progress",
            "Runs started and not yet completed, over all selected flows (open runs expire after "
            "AEP_EXPORTER_OPEN_RUN_TTL).",
            "short",
            Query(f"sum({per_flow(selector('aep_flow_runs_in_progress', *FLEET))})", instant=True),
        ),
        stat(
            "Success ratio",
            "Successful runs over all completed runs in the dashboard's time range.",
            "percentunit",
            Query(success_ratio(FLEET, RANGE_WINDOW, "sum"), instant=True),
            steps=(("red", None), ("orange", 0.95), ("green", 0.99)),
            mappings=[NO_RUNS],
        ),
    )
    runs = (
        timeseries(
            "Failed runs by flow",
            "Failed runs per flow in each $__rate_interval window; flows without failures are "
            "hidden. Click a bar for the flow's detail.",
            "short",
            Query(with_flow_name(failed_by_flow, FLEET), legend=flow_legend),
            bars=True,
            stack=True,
            defaults={"links": detail_links(DETAIL_LINK_FROM_SERIES)},
        ),
        timeseries(
            "Runs by outcome",
            "Completed runs of all selected flows in each $__rate_interval window, by outcome.",
            "short",
            Query(
                f"sum by (status) ({flow_increase('aep_flow_runs_total', FLEET)})",
                legend="{{status}}",
            ),
            bars=True,
            stack=True,
            overrides=OUTCOME_COLORS,
        ),
        bargauge(
            "Top failing flows",
            "The ten flows with the most failed runs in the dashboard's time range. Click a bar "
            "for the flow's detail.",
            "short",
            Query(top_failing, legend=flow_legend, instant=True),
            links=detail_links(DETAIL_LINK_FROM_SERIES),
        ),
        state_timeline(
            "Adobe-side alerts",
            "State of the alerts Adobe sends for each flow (delay, error_rate): firing or "
            "resolved, ordered by the alert's own time.",
            Query(
                with_flow_name(per_flow(selector("aep_flow_alert_active", *FLEET)), FLEET),
                legend="{{flow_name}} ({{sandbox}}) {{alert}}",
            ),
            ALERT_TEXT,
        ),
        timeseries(
            "Runs in progress by flow",
            "Open runs per flow (started, not yet completed); flows with none are hidden.",
            "short",
            Query(
                with_flow_name(
                    f"{per_flow(selector('aep_flow_runs_in_progress', *FLEET))} > 0", FLEET
                ),
                legend=flow_legend,
                empty_ok="only flows with an open run are shown, and the scenario sends no "
                "start notification",
            ),
            width=24,
            height=6,
            defaults={"links": detail_links(DETAIL_LINK_FROM_SERIES)},
        ),
    )
    return Dashboard(
        uid=OVERVIEW_UID,
        description="Every AEP dataflow at a glance: freshness, failures and Adobe's alerts.",
        time_from="now-24h",
        variables=(
            datasource_variable(),
            cluster_variable(),
            sandbox_variable(multi=True),
            flow_variable(multi=True),
        ),
        sections=(("Fleet", fleet), ("Flow health", (health,)), ("Runs", runs)),
    )


def detail() -> Dashboard:
    """Flow detail: everything the exporter knows about one flow."""
    last_run_absent = (
        "absent when the newest run did not report it (the documented failure payload has no "
        "completion time and no record counts)"
    )
    info = table(
        "Flow",
        "The flow's metadata: catalogue name, else the Flow Service name, else the newest "
        "payload's flowName, else its id; source from the catalogue, else the Flow Service "
        "connection spec; owner and severity from the catalogue; IMS org from the payloads; "
        "whether Flow Service reports the flow enabled (empty without Flow Service).",
        Query(per_flow(selector("aep_flow_info", *ONE)), instant=True, fmt="table"),
        Query(
            per_flow(selector("aep_flow_enabled", *ONE)),
            instant=True,
            fmt="table",
            empty_ok=NO_FLOW_SERVICE,
        ),
        height=4,
        organize={
            "excludeByName": {"Time": True, "Value #A": True, "job": True},
            "includeByName": {},
            "indexByName": {
                "flow_name": 0,
                "sandbox": 1,
                "flow_id": 2,
                "owner": 3,
                "source": 4,
                "flow_severity": 5,
                "ims_org": 6,
                "Value #B": 7,
            },
            "renameByName": {
                "flow_name": "Flow",
                "owner": "Owner",
                "source": "Source",
                "flow_severity": "Severity",
                "ims_org": "IMS org",
                "Value #B": "Enabled",
            },
        },
        overrides=(by_name("Enabled", ("mappings", value_mappings(ENABLED_TEXT))),),
    )
    last_run = (
        stat(
            "Newest run",
            "Outcome of the newest completed run (aep_flow_last_run_success).",
            "none",
            Query(per_flow(selector("aep_flow_last_run_success", *ONE)), instant=True),
            width=3,
            mappings=value_mappings(OUTCOME_TEXT),
        ),
        stat(
            "Newest run completed",
            "Completion time of the newest run, whatever its outcome.",
            "dateTimeFromNow",
            Query(f"{newest_completion(ONE)} * 1000", instant=True),
        ),
        stat(
            "Since last success",
            "Time since the newest successful run completed.",
            "s",
            Query(since_success(ONE), instant=True),
        ),
        stat(
            "Expected interval",
            "Expected time between runs: the catalogue's interval, else the Flow Service "
            "schedule; empty when neither gives one (the alerts then assume 1 day).",
            "s",
            Query(per_flow(selector("aep_flow_expected_interval_seconds", *ONE)), instant=True),
            width=3,
        ),
        stat(
            "Newest run duration",
            "Duration of the newest completed run, whatever its outcome; empty when that run "
            "reported no start or completion time.",
            "s",
            Query(
                per_flow(selector("aep_flow_last_run_duration_seconds", *ONE)),
                instant=True,
                empty_ok=last_run_absent,
            ),
            width=3,
        ),
        stat(
            "Newest run records",
            "Input and output records of the newest completed run; empty when it reported none.",
            "short",
            Query(
                per_flow(selector("aep_flow_last_run_input_records", *ONE)),
                legend="in",
                instant=True,
                empty_ok=last_run_absent,
            ),
            Query(
                per_flow(selector("aep_flow_last_run_output_records", *ONE)),
                legend="out",
                instant=True,
                empty_ok=last_run_absent,
            ),
        ),
        stat(
            "Runs in progress",
            "Runs started and not yet completed.",
            "short",
            Query(per_flow(selector("aep_flow_runs_in_progress", *ONE)), instant=True),
            width=3,
        ),
    )
    runs = (
        timeseries(
            "Runs by outcome",
            "Runs in each $__rate_interval window: completed by outcome, successful runs that "
            "still reported errors (partial ingestion), and start notifications.",
            "short",
            Query(
                f"sum by (status) ({flow_increase('aep_flow_runs_total', ONE)})",
                legend="{{status}}",
            ),
            Query(
                f"sum({flow_increase('aep_flow_runs_with_errors_total', ONE)})",
                legend="success with errors",
            ),
            Query(f"sum({flow_increase('aep_flow_runs_started_total', ONE)})", legend="started"),
            bars=True,
            overrides=OUTCOME_COLORS,
        ),
        timeseries(
            "Error codes",
            "Runs that reported each error code, per $__rate_interval window (run, activity and "
            "failed-record errors; each code once per run).",
            "short",
            Query(
                f"sum by (error_code) ({flow_increase('aep_flow_run_errors_total', ONE)})",
                legend="{{error_code}}",
            ),
            bars=True,
            stack=True,
        ),
        timeseries(
            "Activities by status",
            "Activities of completed runs (copyActivity, promotionActivity, …) by status, per "
            "$__rate_interval window.",
            "short",
            Query(
                f"sum by (activity, status) ({flow_increase('aep_flow_activity_runs_total', ONE)})",
                legend="{{activity}} {{status}}",
            ),
            bars=True,
            stack=True,
        ),
        state_timeline(
            "Adobe-side alerts",
            "State of the alerts Adobe sends for this flow (delay, error_rate): firing or "
            "resolved.",
            Query(per_flow(selector("aep_flow_alert_active", *ONE)), legend="{{alert}}"),
            ALERT_TEXT,
        ),
        timeseries(
            "Open runs over time",
            "Open runs: started and not yet completed (dropped after AEP_EXPORTER_OPEN_RUN_TTL).",
            "short",
            Query(per_flow(selector("aep_flow_runs_in_progress", *ONE)), legend="in progress"),
            width=24,
            height=6,
        ),
    )
    durations = (
        heatmap(
            "Run duration distribution",
            "Successful runs per duration bucket in each $__rate_interval window "
            "(aep_flow_run_duration_seconds; failed runs are not observed).",
            Query(
                f"sum by (le) ({flow_increase('aep_flow_run_duration_seconds_bucket', ONE)})",
                legend="{{le}}",
                fmt="heatmap",
            ),
            "s",
        ),
        timeseries(
            "Run duration",
            "p50, p95 and mean duration of the successful runs that completed in each "
            "$__rate_interval window (none: no value), and the newest run's duration whatever "
            "its outcome.",
            "s",
            Query(quantile(0.5, "aep_flow_run_duration_seconds_bucket", ONE, True), legend="p50"),
            Query(quantile(0.95, "aep_flow_run_duration_seconds_bucket", ONE, True), legend="p95"),
            Query(
                f"sum({flow_counter('rate', DURATION_SUM, ONE, RATE_WINDOW)}) / "
                f"sum({flow_counter('rate', DURATION_COUNT, ONE, RATE_WINDOW)})",
                legend="mean",
            ),
            Query(
                per_flow(selector("aep_flow_last_run_duration_seconds", *ONE)),
                legend="newest run",
                empty_ok=last_run_absent,
            ),
        ),
    )
    volume = (
        timeseries(
            "Records",
            "Records read, written and failed by completed runs, per $__rate_interval window.",
            "short",
            Query(f"sum({flow_increase('aep_flow_input_records_total', ONE)})", legend="in"),
            Query(f"sum({flow_increase('aep_flow_output_records_total', ONE)})", legend="out"),
            Query(f"sum({flow_increase('aep_flow_failed_records_total', ONE)})", legend="failed"),
        ),
        timeseries(
            "Record loss",
            "Share of input records not written (1 - out/in) and share reported failed "
            "(failed/in), per $__rate_interval window; empty where no records were read.",
            "percentunit",
            Query(
                f"1 - sum({flow_increase('aep_flow_output_records_total', ONE)}) / "
                f"(sum({flow_increase('aep_flow_input_records_total', ONE)}) > 0)",
                legend="1 - out/in",
            ),
            Query(
                f"sum({flow_increase('aep_flow_failed_records_total', ONE)}) / "
                f"(sum({flow_increase('aep_flow_input_records_total', ONE)}) > 0)",
                legend="failed/in",
            ),
        ),
        timeseries(
            "Bytes",
            "Bytes read and written by completed runs, per $__rate_interval window.",
            "bytes",
            Query(f"sum({flow_increase('aep_flow_input_bytes_total', ONE)})", legend="in"),
            Query(f"sum({flow_increase('aep_flow_output_bytes_total', ONE)})", legend="out"),
        ),
        timeseries(
            "Files",
            "Files read and written by completed runs, per $__rate_interval window.",
            "short",
            Query(f"sum({flow_increase('aep_flow_input_files_total', ONE)})", legend="in"),
            Query(f"sum({flow_increase('aep_flow_output_files_total', ONE)})", legend="out"),
        ),
    )
    return Dashboard(
        uid=DETAIL_UID,
        description="One AEP dataflow: runs, duration, data volume, errors and Adobe's alerts.",
        time_from="now-7d",
        variables=(
            datasource_variable(),
            cluster_variable(),
            sandbox_variable(multi=False),
            flow_variable(multi=False),
        ),
        sections=(
            ("Flow", (info,)),
            ("Newest run", last_run),
            ("Runs", runs),
            ("Duration", durations),
            ("Data volume", volume),
        ),
    )


def self_increase(metric: str) -> str:
    """Increase of one of the exporter's own counters per $__rate_interval, per process."""
    return f"increase({selector(metric, *INSTANCE)}[{RATE}])"


def adobe_side() -> tuple[Panel, ...]:
    """The exporter dashboard's Adobe row: registration, API requests, token, pollers."""
    return (
        table(
            "Event registration",
            "Adobe's raw state of the I/O Events registration (AEP_EXPORTER_REGISTRATION_URL), "
            "polled every AEP_EXPORTER_REGISTRATION_POLL_INTERVAL: healthy only when enabled and "
            "webhook_status is verified (README runbook AepEventsRegistrationUnhealthy).",
            Query(
                selector("aep_events_registration_info", *INSTANCE),
                instant=True,
                fmt="table",
                empty_ok=NO_ADOBE,
            ),
            Query(
                selector("aep_events_registration_healthy", *INSTANCE),
                instant=True,
                fmt="table",
                empty_ok=NO_ADOBE,
            ),
            width=12,
            height=6,
            organize={
                "excludeByName": {
                    "Time": True,
                    "Value #A": True,
                    "__name__": True,
                    "job": True,
                },
                "includeByName": {},
                "indexByName": {
                    "registration_id": 0,
                    "Value #B": 1,
                    "webhook_status": 2,
                    "enabled": 3,
                    "delivery_type": 4,
                    "instance": 5,
                },
                "renameByName": {
                    "registration_id": "Registration",
                    "Value #B": "Health",
                    "webhook_status": "Webhook status",
                    "enabled": "Enabled",
                    "delivery_type": "Delivery",
                    "instance": "Exporter",
                },
            },
            overrides=(
                by_name(
                    "Health",
                    ("mappings", value_mappings(HEALTHY_TEXT)),
                    ("custom.cellOptions", {"type": "color-text"}),
                ),
            ),
        ),
        state_timeline(
            "Registration health",
            "Whether Adobe reports the registration healthy (enabled and verified), over time.",
            Query(
                selector("aep_events_registration_healthy", *INSTANCE),
                legend="{{registration_id}} {{instance}}",
                empty_ok=NO_ADOBE,
            ),
            HEALTHY_TEXT,
            height=6,
        ),
        timeseries(
            "API requests by API and result",
            "Requests to each Adobe API (ims, flow_service, journal, registration) per "
            "$__rate_interval window, by result: ok, unauthorized, not_found, throttled, "
            "server_error, network_error, invalid.",
            "short",
            Query(
                f"sum by (api, result) ({self_increase('aep_exporter_adobe_requests_total')})",
                legend="{{api}} {{result}}",
                empty_ok=NO_ADOBE,
            ),
            bars=True,
            stack=True,
        ),
        stat(
            "IMS token expires in",
            "Time until each exporter's cached IMS token expires; the exporter renews it 10 "
            "minutes before, when a request needs it (red: under 5 minutes).",
            "s",
            Query(
                f"{selector('aep_exporter_adobe_token_expiry_timestamp_seconds', *INSTANCE)} "
                "- time()",
                legend="{{instance}}",
                instant=True,
                empty_ok=NO_ADOBE,
            ),
            width=6,
            height=8,
            steps=(("red", None), ("orange", 300), ("green", 600)),
        ),
        stat(
            "Since last successful cycle",
            "Time since each Adobe poller (flows, reconcile, journal, registration) last "
            "completed a cycle, the newest of any exporter (one replica polls at a time); "
            "AepFlowExporterPollStalled fires after 3 cycles.",
            "s",
            Query(
                "time() - max by (task) "
                f"({selector('aep_exporter_poll_last_success_timestamp_seconds', *INSTANCE)})",
                legend="{{task}}",
                instant=True,
                empty_ok=NO_ADOBE,
            ),
            width=6,
            height=8,
        ),
        timeseries(
            "Journal resets and reconciled runs",
            "Expired journal positions (410) the journal poller recovered from by seeking back "
            "(AEP_EXPORTER_JOURNAL_URL), and runs reconciliation recorded that no push or "
            "journal source delivered, per $__rate_interval window.",
            "short",
            Query(
                f"sum({self_increase('aep_exporter_journal_cursor_resets_total')})",
                legend="journal cursor resets",
                empty_ok="only with AEP_EXPORTER_JOURNAL_URL; the scenario has no journal",
            ),
            Query(
                "sum(increase("
                + selector(
                    "aep_exporter_notifications_total",
                    *INSTANCE,
                    'source="flow_service"',
                    'outcome="recorded"',
                )
                + f"[{RATE}]))",
                legend="runs only Flow Service knew",
                empty_ok="only with reconciliation on; the scenario has no Flow Service",
            ),
            width=24,
            bars=True,
            stack=True,
        ),
    )


def exporter_health() -> Dashboard:
    """Exporter health: is every delivery from Adobe received, verified and recorded."""
    status = (
        stat(
            "Up",
            "Whether Prometheus reaches each exporter (up).",
            "none",
            Query(selector("up", *INSTANCE), legend="{{instance}}", instant=True),
            mappings=value_mappings(UP_TEXT),
        ),
        stat(
            "Store ready",
            "Whether each exporter's state store accepts writes; deliveries get 503 (and Adobe "
            "retries) while it does not.",
            "none",
            Query(
                selector("aep_exporter_store_ready", *INSTANCE), legend="{{instance}}", instant=True
            ),
            mappings=value_mappings(READY_TEXT),
        ),
        stat(
            "Since last notification",
            "Time since the newest notification was recorded; Adobe's silence looks like this.",
            "s",
            Query(
                # > 0: before its first notification the process exposes the gauge at 0.
                "time() - max("
                f"{selector('aep_exporter_last_notification_timestamp_seconds', *INSTANCE)} > 0)",
                instant=True,
            ),
        ),
        stat(
            "Tracked flows",
            "Flows currently tracked, against the flow cap AEP_EXPORTER_MAX_FLOWS.",
            "short",
            Query(f"max({selector('aep_exporter_tracked_flows', *INSTANCE)})", instant=True),
        ),
        stat(
            "Dead letters stored",
            "Verified deliveries the exporter could not understand, kept for "
            "`aep-flow-exporter dead-letters list|show|replay`.",
            "short",
            Query(f"max({selector('aep_exporter_dead_letters_stored', *INSTANCE)})", instant=True),
            steps=(("green", None), ("orange", 1)),
        ),
        stat(
            "Samples per scrape",
            "Samples in the newest scrape, to compare with the job's sample_limit (README states "
            "the series one flow costs).",
            "short",
            Query(f"max({selector('scrape_samples_scraped', *INSTANCE)})", instant=True),
        ),
        table(
            "Build",
            "Version and signature verification mode of each exporter; verification off means "
            "--insecure-accept-unsigned.",
            Query(selector("aep_exporter_build_info", *INSTANCE), instant=True, fmt="table"),
            height=4,
            organize={
                "excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True},
                "includeByName": {},
                "indexByName": {"instance": 0, "version": 1, "verification": 2},
                "renameByName": {
                    "instance": "Exporter",
                    "version": "Version",
                    "verification": "Signature verification",
                },
            },
        ),
    )
    deliveries = (
        timeseries(
            "Notifications by source and outcome",
            "Notification documents per $__rate_interval window by where they came from "
            "(webhook, journal, flow_service) and outcome: a run that arrives by two sources "
            "is recorded once and a duplicate for the other; flow_service recorded means "
            "reconciliation found a run no push or journal source delivered "
            "(AepFlowNotificationsMissed).",
            "short",
            Query(
                f"sum by (source, outcome) ({self_increase('aep_exporter_notifications_total')})",
                legend="{{source}} {{outcome}}",
            ),
            width=24,
            bars=True,
            stack=True,
        ),
        timeseries(
            "Notifications by kind and outcome",
            "Notification documents per $__rate_interval window: recorded, duplicate, "
            "dead-lettered or ignored, by kind.",
            "short",
            Query(
                f"sum by (kind, outcome) ({self_increase('aep_exporter_notifications_total')})",
                legend="{{kind}} {{outcome}}",
            ),
            bars=True,
            stack=True,
        ),
        timeseries(
            "Rejected requests",
            "Webhook requests refused, by reason (a 401 is final for Adobe, a 5xx is retried), "
            "and documents accepted without a recipient id while client ids are configured.",
            "short",
            Query(
                f"sum by (reason) ({self_increase('aep_exporter_requests_rejected_total')})",
                legend="{{reason}}",
            ),
            Query(
                f"sum({self_increase('aep_exporter_recipient_missing_total')})",
                legend="accepted without recipient id",
            ),
            bars=True,
            stack=True,
        ),
        timeseries(
            "Delivery duration",
            "p50 and p99 of webhook request handling time; Adobe abandons a delivery after 10 s "
            "(red line) and retries it.",
            "s",
            Query(
                quantile(0.5, "aep_exporter_delivery_duration_seconds_bucket", INSTANCE, False),
                legend="p50",
            ),
            Query(
                quantile(0.99, "aep_exporter_delivery_duration_seconds_bucket", INSTANCE, False),
                legend="p99",
            ),
            threshold_line=True,
            defaults={"thresholds": thresholds(("green", None), ("red", 10))},
        ),
        timeseries(
            "Deliveries and Adobe retries",
            "Webhook deliveries handled, and those Adobe marked as retries (x-adobe-retry-count): "
            "a growing share means Adobe is working through a backlog.",
            "short",
            Query(
                f"sum({self_increase('aep_exporter_delivery_duration_seconds_count')})",
                legend="deliveries",
            ),
            Query(f"sum({self_increase('aep_exporter_delivery_retries_total')})", legend="retries"),
        ),
        timeseries(
            "Notification lag",
            "p50 and p99 of receipt time minus run completion time: how late Adobe tells us.",
            "s",
            Query(
                quantile(0.5, "aep_exporter_notification_lag_seconds_bucket", INSTANCE, False),
                legend="p50",
            ),
            Query(
                quantile(0.99, "aep_exporter_notification_lag_seconds_bucket", INSTANCE, False),
                legend="p99",
            ),
        ),
        timeseries(
            "Anomalies by field",
            "Payload values treated as unknown (NaN, negative, fractional, wrong type), by JSON "
            "field, per $__rate_interval window.",
            "short",
            Query(
                f"sum by (field) ({self_increase('aep_exporter_anomalies_total')})",
                legend="{{field}}",
                empty_ok="a field's series is created by its first anomaly; the scenario sends "
                "valid payloads only",
            ),
            bars=True,
            stack=True,
        ),
    )
    state = (
        timeseries(
            "Dead letters",
            "Dead letters stored now, newly stored, and evicted to stay within the dead-letter "
            "bounds, per $__rate_interval window.",
            "short",
            Query(
                f"max({selector('aep_exporter_dead_letters_stored', *INSTANCE)})",
                legend="stored now",
            ),
            Query(f"sum({self_increase('aep_exporter_dead_letters_total')})", legend="new"),
            Query(
                f"sum({self_increase('aep_exporter_dead_letters_evicted_total')})",
                legend="evicted",
            ),
        ),
        timeseries(
            "Tracked flows and overflow",
            'Flows tracked by each exporter, and notifications folded into flow_id="other" '
            "because the flow cap was reached.",
            "short",
            Query(selector("aep_exporter_tracked_flows", *INSTANCE), legend="tracked {{instance}}"),
            Query(f"sum({self_increase('aep_exporter_flows_overflow_total')})", legend="overflow"),
        ),
        state_timeline(
            "Store readiness",
            "Whether each exporter's state store accepts writes, over time.",
            Query(selector("aep_exporter_store_ready", *INSTANCE), legend="{{instance}}"),
            READY_TEXT,
        ),
        state_timeline(
            "Leader",
            "Which replica runs the Adobe pollers (a PostgreSQL advisory lock); with SQLite the "
            "one exporter always leads.",
            Query(selector("aep_exporter_leader", *INSTANCE), legend="{{instance}}"),
            LEADER_TEXT,
        ),
        timeseries(
            "Public key fetches",
            "Adobe signing-key fetches by result: ok, error (unreachable, timeout, bad PEM) or "
            "rejected_path (refused before fetching).",
            "short",
            Query(
                f"sum by (result) ({self_increase('aep_exporter_public_key_fetches_total')})",
                legend="{{result}}",
            ),
            bars=True,
            stack=True,
        ),
    )
    return Dashboard(
        uid=EXPORTER_UID,
        description="aep-flow-exporter itself: deliveries, rejections, latency against Adobe's "
        "timeout, state and keys, and the Adobe side: registration health, API requests, token, "
        "pollers.",
        time_from="now-6h",
        variables=(
            datasource_variable(),
            cluster_variable(),
            instance_variable(),
            # Hidden: kept so that links back to the flow dashboards keep the selection.
            sandbox_variable(multi=True, hide=2),
            flow_variable(multi=True, hide=2),
        ),
        sections=(
            ("Status", status),
            ("Deliveries", deliveries),
            ("State", state),
            ("Adobe side", adobe_side()),
        ),
    )


def dashboards() -> tuple[Dashboard, ...]:
    """The three dashboards, in link order."""
    return (overview(), detail(), exporter_health())


# --- rendering ---------------------------------------------------------------------------------


def ref_id(index: int) -> str:
    """Grafana's query letters: A, B, …"""
    return chr(ord("A") + index)


def render_panel(panel: Panel, panel_id: int, grid: JSON) -> JSON:
    """The panel's Grafana JSON."""
    defaults: JSON = {"unit": panel.unit, **panel.defaults}
    if panel.custom:
        defaults["custom"] = panel.custom
    rendered: JSON = {
        "datasource": DATASOURCE,
        "description": panel.description,
        "fieldConfig": {"defaults": defaults, "overrides": list(panel.overrides)},
        "gridPos": grid,
        "id": panel_id,
        "options": panel.options,
        "targets": [
            {
                "datasource": DATASOURCE,
                "editorMode": "code",
                "expr": query.expr,
                "format": query.fmt,
                "instant": query.instant,
                "legendFormat": query.legend,
                "range": not query.instant,
                "refId": ref_id(index),
            }
            for index, query in enumerate(panel.queries)
        ],
        "title": panel.title,
        "type": panel.kind,
    }
    if panel.transformations:
        rendered["transformations"] = list(panel.transformations)
    return rendered


def layout(dashboard: Dashboard) -> list[JSON]:
    """Rows and panels placed left to right, wrapping at the grid width."""
    panels: list[JSON] = []
    y = 0
    for title, section in dashboard.sections:
        panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "id": len(panels) + 1,
                "panels": [],
                "title": title,
                "type": "row",
            }
        )
        y += 1
        x, row_height = 0, 0
        for panel in section:
            if x + panel.width > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            grid = {"h": panel.height, "w": panel.width, "x": x, "y": y}
            panels.append(render_panel(panel, len(panels) + 1, grid))
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return panels


def dashboard_links(uid: str) -> list[JSON]:
    """Dashboard links to the other two, keeping time range and variables."""
    return [
        {
            "asDropdown": False,
            "icon": "dashboard",
            "includeVars": True,
            "keepTime": True,
            "tags": [],
            "targetBlank": False,
            "title": title,
            "tooltip": "",
            "type": "link",
            "url": f"/d/{other}",
        }
        for other, title in TITLES.items()
        if other != uid
    ]


def render(dashboard: Dashboard) -> JSON:
    """The dashboard's Grafana JSON (provisioning or import)."""
    return {
        # No built-in annotation: Grafana adds it on load, and it would name a datasource uid.
        "annotations": {"list": []},
        "description": dashboard.description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": dashboard_links(dashboard.uid),
        "panels": layout(dashboard),
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": TAGS,
        "templating": {"list": list(dashboard.variables)},
        "time": {"from": dashboard.time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": dashboard.title,
        "uid": dashboard.uid,
        "version": 1,
        "weekStart": "",
    }


def rendered_files() -> dict[str, str]:
    """File name -> JSON text of every dashboard, as committed."""
    return {
        f"{d.uid}.json": json.dumps(render(d), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for d in dashboards()
    }


def expectations() -> dict[tuple[str, str, str], str]:
    """(dashboard uid, panel title, refId) -> why FED_SCENARIO may leave it empty ("": it won't)."""
    return {
        (d.uid, panel.title, ref_id(index)): query.empty_ok
        for d in dashboards()
        for _, section in d.sections
        for panel in section
        for index, query in enumerate(panel.queries)
    }


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards, or with --check report the ones that differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered_files().items():
        path = OUT_DIR / name
        if not args.check:
            path.write_text(text, encoding="utf-8")
        elif not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    if stale:
        sys.stderr.write(f"stale: {', '.join(stale)}; run python grafana/build.py\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
