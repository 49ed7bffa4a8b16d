"""Structural checks of the committed Grafana dashboards (what Grafana and operators rely on)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.metrics.families import (
    ADOBE_SELF_FAMILIES,
    FLOW_ENABLED,
    FLOW_FAMILIES,
    SELF_FAMILIES,
)
from grafana import build
from tests.dashboards.queries import (
    NON_QUERY_PANELS,
    fed_queries,
    load_dashboards,
    panel_queries,
    panels,
    variable_promql,
    variable_queries,
)
from tests.promql import grafana_variables, metric_names, range_windows

UIDS = {"aep-flow-overview", "aep-flow-detail", "aep-flow-exporter"}
FILES = sorted(f"{uid}.json" for uid in UIDS)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's global variables, available without a templating entry.
GLOBAL_VARIABLES = {"__rate_interval", "__interval", "__range", "__url_time_range", "__data"}
# Windows of graphs: $__rate_interval, as a range or (per-flow counters) a subquery.
GRAPH_WINDOWS = {"$__rate_interval", "$__rate_interval:"}
# Windows of instant queries: the dashboard range, or the health table's fixed day.
INSTANT_WINDOWS = {"$__range:$__interval", "1d:5m"}
PER_FLOW_NAMES = {name for family in FLOW_FAMILIES for name in family.sample_names}


def by_file() -> list[Any]:
    """One pytest param per committed dashboard, named by file."""
    return [pytest.param(name, id=name) for name in sorted(load_dashboards())]


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair anywhere in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def strings(node: Any) -> Iterator[str]:
    """Every string value anywhere in a JSON document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Panels that query data (not rows or text)."""
    return [p for p in panels(dashboard) if p["type"] not in NON_QUERY_PANELS]


def test_committed_files(dashboards: dict[str, dict[str, Any]]) -> None:
    """Exactly the three dashboards are committed, each named by its fixed uid."""
    assert sorted(dashboards) == FILES
    assert {name: d["uid"] for name, d in dashboards.items()} == {
        name: name.removesuffix(".json") for name in FILES
    }


@pytest.mark.parametrize("name", by_file())
def test_dashboard_header(dashboards: dict[str, dict[str, Any]], name: str) -> None:
    """Each dashboard has a Grafana 10/11 schema, a title, tags and no numeric id."""
    dashboard = dashboards[name]
    assert dashboard["schemaVersion"] == 39
    assert dashboard["title"].startswith("AEP dataflows: ")
    assert "aep-flow-exporter" in dashboard["tags"]
    assert dashboard["id"] is None
    assert dashboard["description"]


@pytest.mark.parametrize("name", by_file())
def test_datasource_is_templated_everywhere(
    dashboards: dict[str, dict[str, Any]], name: str
) -> None:
    """Every datasource reference is the ${datasource} variable; no uid is hard-coded."""
    references = [value for key, value in walk(dashboards[name]) if key == "datasource"]
    assert references
    assert all(reference == DATASOURCE for reference in references)
    variables = dashboards[name]["templating"]["list"]
    assert variables[0] | {"current": {}} == {
        **variables[0],
        "name": "datasource",
        "type": "datasource",
        "query": "prometheus",
    }


@pytest.mark.parametrize("name", by_file())
def test_sandbox_and_flow_variables(dashboards: dict[str, dict[str, Any]], name: str) -> None:
    """Sandbox lists aep_flow_info's sandboxes; flow shows flow_name and selects flow_id."""
    variables = {v["name"]: v for v in dashboards[name]["templating"]["list"]}
    assert variables["sandbox"]["definition"] == (
        'label_values(aep_flow_info{cluster=~"$cluster"}, sandbox)'
    )
    flow = variables["flow"]
    assert flow["definition"].startswith("query_result(")
    assert "aep_flow_info" in flow["definition"]
    assert flow["regex"] == build.FLOW_REGEX
    for variable in (variables["sandbox"], flow):
        assert variable["query"]["query"] == variable["definition"]
        assert variable["refresh"] == 2  # on time range change: new flows appear
        if variable["multi"]:
            assert variable["includeAll"]
            assert variable["allValue"] == ".*"


def js_regex(pattern: str) -> re.Pattern[str]:
    """A Grafana `/…/` regex (JavaScript named groups) as a Python pattern."""
    assert pattern.startswith("/")
    assert pattern.endswith("/")
    return re.compile(pattern[1:-1].replace("(?<", "(?P<"))


def query_result_line(labels: dict[str, str], value: float, millis: int) -> str:
    """An option as Grafana's query_result() lists it: `name{l="v",…} value ms`, labels sorted."""
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}} {value:g} {millis}"


def test_flow_regex_takes_name_as_text_and_id_as_value() -> None:
    """On a query_result() line the flow regex captures flow_name as text, flow_id as value."""
    labels = {
        "flow_id": "1c6f1047-dcaf-48fe-af10-47dcaf08feaf",
        "flow_name": "CRM accounts (S3, hourly)",
        "flow_severity": "critical",
        "ims_org": "ORG@AdobeOrg",
        "job": "aep-flow-exporter",
        "owner": "data-platform",
        "sandbox": "prod",
        "source": "s3",
    }
    match = js_regex(build.FLOW_REGEX).search(query_result_line(labels, 1, 1_700_000_000_000))
    assert match is not None
    assert match.group("value") == labels["flow_id"]
    assert match.group("text") == labels["flow_name"]


def test_flow_regex_accepts_an_empty_name() -> None:
    """A flow whose name label is empty still yields an option (text empty, value its id)."""
    line = query_result_line({"flow_id": "f", "flow_name": "", "sandbox": "dev"}, 1, 0)
    match = js_regex(build.FLOW_REGEX).search(line)
    assert match is not None
    assert (match.group("value"), match.group("text")) == ("f", "")


@pytest.mark.parametrize("name", by_file())
def test_every_panel_has_targets_unit_and_description(
    dashboards: dict[str, dict[str, Any]], name: str
) -> None:
    """Every querying panel has targets with refIds, a unit and a description."""
    for panel in query_panels(dashboards[name]):
        assert panel["targets"], panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["description"].strip(), panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["instant"] != target["range"], panel["title"]


@pytest.mark.parametrize("name", by_file())
def test_panel_titles_and_ids_are_unique(dashboards: dict[str, dict[str, Any]], name: str) -> None:
    """Panel ids are unique, and so are querying panels' titles (the e2e list keys on them)."""
    all_panels = list(panels(dashboards[name]))
    ids = [p["id"] for p in all_panels]
    titles = [p["title"] for p in query_panels(dashboards[name])]
    assert len(ids) == len(set(ids))
    assert len(titles) == len(set(titles))


@pytest.mark.parametrize("name", by_file())
def test_panels_fit_the_grid_without_overlap(
    dashboards: dict[str, dict[str, Any]], name: str
) -> None:
    """Every panel lies within the 24-column grid and no two panels overlap."""
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboards[name]):
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


def names_read(dashboard: dict[str, Any]) -> set[str]:
    """Every series name a dashboard's panels and variables read."""
    expressions = [expr for _, expr in panel_queries(dashboard)]
    expressions += [variable_promql(query) for _, query in variable_queries(dashboard)]
    read: set[str] = set()
    for expr in expressions:
        read |= metric_names(expr)
    return read


@pytest.mark.parametrize("name", by_file())
def test_queries_read_only_exposed_metrics(
    dashboards: dict[str, dict[str, Any]], name: str, known_names: frozenset[str]
) -> None:
    """Every series a panel or variable reads is exposed by the exporter or a recording rule."""
    read = names_read(dashboards[name])
    assert read
    assert read <= known_names, sorted(read - known_names)


def test_a_query_reading_an_undeclared_metric_is_caught(known_names: frozenset[str]) -> None:
    """A panel or variable naming a series no family declares falls outside the known names."""
    dashboard = {
        "panels": [{"title": "Runs", "targets": [{"expr": "sum(aep_flow_run_total)"}]}],
        "templating": {
            "list": [{"type": "query", "name": "f", "query": "label_values(aep_flow_inf, f)"}]
        },
    }
    assert names_read(dashboard) - known_names == {"aep_flow_run_total", "aep_flow_inf"}


def test_every_metric_family_is_charted(dashboards: dict[str, dict[str, Any]]) -> None:
    """Every family of the metrics contract appears in at least one dashboard."""
    read: set[str] = set()
    for dashboard in dashboards.values():
        for _, expr in panel_queries(dashboard):
            read |= metric_names(expr)
    missing = [
        family.name
        for family in FLOW_FAMILIES + SELF_FAMILIES
        if not read & set(family.sample_names)
    ]
    assert not missing


@pytest.mark.parametrize("name", by_file())
def test_rate_windows(dashboards: dict[str, dict[str, Any]], name: str) -> None:
    """Graphs use $__rate_interval; instant stats and tables use $__range or the fixed day."""
    for panel in query_panels(dashboards[name]):
        for target in panel["targets"]:
            windows = set(range_windows(target["expr"]))
            allowed = INSTANT_WINDOWS if target["instant"] else GRAPH_WINDOWS
            assert windows <= allowed, (panel["title"], target["refId"], windows)
            if re.search(r"\b(rate|increase)\(", target["expr"]):
                assert windows, (panel["title"], target["refId"])


# How a per-flow series may be read: folded over replicas, grouped, or as a set-operator operand.
_COLLAPSED = re.compile(
    r"(max without \(instance, pod(?:, status)?\) \("
    r"|group by \([\w, ]+\) \("
    r"|unless on \(sandbox, flow_id\) )"
    r"(?P<name>aep_flow_\w+)\{"
)


@pytest.mark.parametrize("name", by_file())
def test_per_flow_series_are_collapsed_over_replicas(
    dashboards: dict[str, dict[str, Any]], name: str
) -> None:
    """Per-flow selectors sit directly in `max without (instance, pod)`, even under increase().

    A range selector on a raw per-flow series would take increase() per pod, and a replaced pod
    (a new series carrying the persisted counters) would under-count; the fold comes first and
    increase() reads it through a subquery.
    """
    for title, expr in panel_queries(dashboards[name]):
        selectors = re.findall(r"\b(aep_flow_\w+)\{", expr)
        collapsed = [m.group("name") for m in _COLLAPSED.finditer(expr)]
        assert all(s in PER_FLOW_NAMES for s in selectors), title
        assert sorted(selectors) == sorted(collapsed), (title, expr)
        assert not re.search(r"\baep_flow_\w+\{[^}]*\}\[", expr), (title, expr)


@pytest.mark.parametrize("name", by_file())
def test_variables_used_are_defined(dashboards: dict[str, dict[str, Any]], name: str) -> None:
    """Every variable a query or link names is a templating variable or a Grafana global."""
    dashboard = dashboards[name]
    defined = {v["name"] for v in dashboard["templating"]["list"]} | GLOBAL_VARIABLES
    used: set[str] = set()
    for text in strings([dashboard["panels"], dashboard["templating"]]):
        used |= grafana_variables(text)
    assert used <= defined, sorted(used - defined)


@pytest.mark.parametrize("name", by_file())
def test_links_resolve_to_the_three_dashboards(
    dashboards: dict[str, dict[str, Any]], name: str
) -> None:
    """Dashboard links reach the other two dashboards; every /d/ link names a known uid."""
    dashboard = dashboards[name]
    targets = {link["url"].removeprefix("/d/") for link in dashboard["links"]}
    assert targets == UIDS - {dashboard["uid"]}
    assert all(link["keepTime"] and link["includeVars"] for link in dashboard["links"])
    for text in strings(dashboard):
        for uid in re.findall(r"/d/([\w-]+)", text):
            assert uid in UIDS, text


def test_fleet_table_links_to_flow_detail_with_its_variables(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    """A flow name in the health table opens the flow detail for that sandbox and flow."""
    health = next(
        p for p in query_panels(dashboards["aep-flow-overview.json"]) if p["title"] == "Flow health"
    )
    flow_column = next(
        o for o in health["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Flow"
    )
    (link,) = next(p["value"] for p in flow_column["properties"] if p["id"] == "links")
    assert link["url"].startswith("/d/aep-flow-detail?")
    for param in (
        "${datasource:queryparam}",
        "${__url_time_range}",
        "var-sandbox=${__data.fields.sandbox}",
        "var-flow=${__data.fields.flow_id}",
    ):
        assert param in link["url"]
    # The link reads these columns, so the table must keep them.
    organize = next(t for t in health["transformations"] if t["id"] == "organize")["options"]
    assert not {"sandbox", "flow_id"} & set(organize["excludeByName"])


@pytest.mark.parametrize("name", by_file())
def test_tables_rename_and_override_existing_columns(
    dashboards: dict[str, dict[str, Any]], name: str
) -> None:
    """Table transformations name real query columns, and overrides name renamed columns."""
    for panel in panels(dashboards[name]):
        if panel["type"] != "table":
            continue
        ref_ids = {t["refId"] for t in panel["targets"]}
        value_columns = {f"Value #{r}" for r in ref_ids} if len(ref_ids) > 1 else {"Value"}
        organize = next(t for t in panel["transformations"] if t["id"] == "organize")["options"]
        named = set(organize["renameByName"]) | set(organize["excludeByName"])
        values_named = {column for column in named if column.startswith("Value")}
        assert values_named <= value_columns, panel["title"]
        shown = set(organize["renameByName"].values())
        for override in panel["fieldConfig"]["overrides"]:
            assert override["matcher"]["options"] in shown, panel["title"]


def test_fed_expectations_cover_every_query(dashboards: dict[str, dict[str, Any]]) -> None:
    """The generator records, for every committed query, whether the fed scenario fills it."""
    queries = fed_queries()
    keys = {(q.dashboard_uid, q.panel_title, q.ref_id) for q in queries}
    assert keys == set(build.expectations())
    assert len(queries) == sum(len(panel_queries(d)) for d in dashboards.values())
    assert all(q.expects_data or len(q.empty_reason) > 20 for q in queries)
    assert sum(q.expects_data for q in queries) > len(queries) * 3 // 4


@pytest.mark.parametrize("name", by_file())
def test_cluster_variable_is_harmless_without_the_label(
    dashboards: dict[str, dict[str, Any]], name: str
) -> None:
    """$cluster follows the data source, lists the exporters' clusters, and its All matches an
    absent label (the empty string), so dashboards work where Prometheus adds no cluster."""
    variables = dashboards[name]["templating"]["list"]
    assert [v["name"] for v in variables[:2]] == ["datasource", "cluster"]
    cluster = variables[1]
    assert cluster["definition"] == "label_values(aep_exporter_build_info, cluster)"
    assert cluster["query"]["query"] == cluster["definition"]
    assert cluster["multi"]
    assert cluster["includeAll"]
    assert re.fullmatch(cluster["allValue"], "")
    assert cluster["hide"] == 0


def selectors_without_cluster(expr: str) -> list[str]:
    """Metric names in `expr` not selected with cluster=~"$cluster" (bare or other matchers)."""
    missing = []
    for name in metric_names(expr):
        for match in re.finditer(rf"(?<![\w:]){re.escape(name)}(?![\w:])(\{{[^}}]*\}})?", expr):
            if build.CLUSTER not in (match.group(1) or ""):
                missing.append(name)
    return missing


def test_a_selector_without_the_cluster_matcher_is_caught() -> None:
    """The check finds a bare metric name and a selector lacking the cluster matcher."""
    expr = 'sum(a{cluster=~"$cluster", x="1"}) / b{x="1"} + c'
    assert sorted(selectors_without_cluster(expr)) == ["b", "c"]


@pytest.mark.parametrize("name", by_file())
def test_every_selector_matches_the_cluster_variable(
    dashboards: dict[str, dict[str, Any]], name: str
) -> None:
    """Each series a panel or variable reads is selected by $cluster (except $cluster itself)."""
    dashboard = dashboards[name]
    queries = [(title, expr) for title, expr in panel_queries(dashboard)]
    queries += [
        (variable, variable_promql(query))
        for variable, query in variable_queries(dashboard)
        if variable != "cluster"
    ]
    assert queries
    missing = {
        title: found for title, expr in queries if (found := selectors_without_cluster(expr))
    }
    assert missing == {}


def row_panels(dashboard: dict[str, Any], row_title: str) -> list[dict[str, Any]]:
    """The panels between the row titled `row_title` and the next row."""
    found: list[dict[str, Any]] = []
    inside = False
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            inside = panel["title"] == row_title
        elif inside:
            found.append(panel)
    return found


def test_exporter_dashboard_has_an_adobe_side_row(dashboards: dict[str, dict[str, Any]]) -> None:
    """The Adobe row charts registration info and health, API requests by api and result, the
    token's expiry, each poller's last successful cycle, journal resets and reconciled runs:
    every Adobe self-family."""
    panels_ = row_panels(dashboards["aep-flow-exporter.json"], "Adobe side")
    by_title = {p["title"]: p for p in panels_}
    assert set(by_title) == {
        "Event registration",
        "Registration health",
        "API requests by API and result",
        "IMS token expires in",
        "Since last successful cycle",
        "Journal resets and reconciled runs",
    }
    read = set().union(*(metric_names(t["expr"]) for p in panels_ for t in p["targets"]))
    assert [f.name for f in ADOBE_SELF_FAMILIES if not read & set(f.sample_names)] == []
    (requests,) = by_title["API requests by API and result"]["targets"]
    assert requests["expr"].startswith("sum by (api, result) (increase(")
    assert requests["legendFormat"] == "{{api}} {{result}}"
    registration = by_title["Event registration"]
    organize = next(t for t in registration["transformations"] if t["id"] == "organize")
    shown = set(organize["options"]["renameByName"])
    assert {"registration_id", "webhook_status", "enabled", "delivery_type", "Value #B"} <= shown
    (poll,) = by_title["Since last successful cycle"]["targets"]
    assert "max by (task)" in poll["expr"]
    assert poll["legendFormat"] == "{{task}}"


def test_adobe_queries_may_be_empty_in_the_fed_scenario() -> None:
    """The e2e stack configures no Adobe API: each query reading only Adobe-fed series says so."""
    adobe_names = {n for family in ADOBE_SELF_FAMILIES for n in family.sample_names}
    adobe_names |= set(FLOW_ENABLED.sample_names)
    adobe_only = [q for q in fed_queries() if metric_names(q.expr) <= adobe_names]
    assert len(adobe_only) >= 8
    assert [(q.panel_title, q.ref_id) for q in adobe_only if q.expects_data] == []


def test_flow_health_shows_name_source_and_enabled(dashboards: dict[str, dict[str, Any]]) -> None:
    """The fleet table shows each flow's name, source type and Flow Service state by its id."""
    health = next(
        p for p in query_panels(dashboards["aep-flow-overview.json"]) if p["title"] == "Flow health"
    )
    organize = next(t for t in health["transformations"] if t["id"] == "organize")["options"]
    assert {"flow_name": "Flow", "source": "Source"}.items() <= organize["renameByName"].items()
    assert "Enabled" in organize["renameByName"].values()
    assert not {"flow_name", "source", "flow_id"} & set(organize["excludeByName"])


@pytest.mark.parametrize("name", by_file())
def test_flow_names_join_the_source_too(dashboards: dict[str, dict[str, Any]], name: str) -> None:
    """Wherever a panel joins aep_flow_info for the flow's name, it joins its source as well."""
    for title, expr in panel_queries(dashboards[name]):
        if "group_left (flow_name" in expr:
            assert "group_left (flow_name, source)" in expr, title


def test_exporter_dashboard_charts_notifications_by_source_and_outcome(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    """A panel sums notifications by source and outcome, so a run counted by one source and a
    duplicate by another, or recorded only by reconciliation, shows at a glance."""
    panels_ = row_panels(dashboards["aep-flow-exporter.json"], "Deliveries")
    by_title = {p["title"]: p for p in panels_}
    (query,) = by_title["Notifications by source and outcome"]["targets"]
    assert query["expr"].startswith("sum by (source, outcome) (increase(")
    assert "aep_exporter_notifications_total" in query["expr"]
    assert query["legendFormat"] == "{{source}} {{outcome}}"
