"""The metrics contract is declared once (exporter.metrics.families); code and README follow it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from exporter.adobe.client import AdobeApi, RequestResult
from exporter.metrics import families
from exporter.metrics.families import (
    ADOBE_SELF_FAMILIES,
    FLOW_FAMILIES,
    SELF_FAMILIES,
    Family,
    Label,
    exposed_sample_names,
)
from exporter.metrics.self_metrics import SelfMetrics
from tests.rules.conftest import load_rules

REPO = Path(__file__).resolve().parents[1]
DECLARATIONS = Path(families.__file__).resolve()
# A metric name, or the start of one spliced together in an f-string.
_METRIC_NAME = re.compile(r"\baep_[a-z0-9_]+")
_README_LABEL = re.compile(r"`([a-z_]+)`(?: = ([^;`]*))?")


def string_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant in Python source that is not a docstring."""
    tree = ast.parse(source)
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def named_metrics(text: str, names: frozenset[str]) -> set[str]:
    """The metric names (declared ones, or anything shaped like ours) a string contains."""
    return set(_METRIC_NAME.findall(text)) | {name for name in names if name in text}


def test_no_metric_name_is_written_outside_the_declarations() -> None:
    """Outside families.py no string literal names a metric, so a rename is one edit there."""
    names = frozenset(f.name for f in FLOW_FAMILIES + SELF_FAMILIES) | exposed_sample_names()
    found = {
        f"{path.relative_to(REPO)}:{line}": sorted(named_metrics(text, names))
        for path in sorted((REPO / "exporter").rglob("*.py"))
        if path.resolve() != DECLARATIONS
        for line, text in string_literals(path.read_text(encoding="utf-8"))
        if named_metrics(text, names)
    }
    assert found == {}


def test_the_literal_scan_sees_names_and_fragments() -> None:
    """The scan flags whole names and f-string fragments, and skips docstrings and comments."""
    source = (
        '"""Counts aep_flow_runs_total."""\n'
        "# aep_flow_info\n"
        'A = "aep_exporter_store_ready"\n'
        'B = f"aep_flow_{A}_total"\n'
        'C = "renamed_total"\n'
    )
    names = frozenset({"renamed_total"})
    found = [name for _, text in string_literals(source) for name in named_metrics(text, names)]
    assert sorted(found) == ["aep_exporter_store_ready", "aep_flow_", "renamed_total"]


def test_family_names_are_unique() -> None:
    """No two declared families share a name or a sample name."""
    declared = FLOW_FAMILIES + SELF_FAMILIES
    samples = [name for family in declared for name in family.sample_names]
    assert len({family.name for family in declared}) == len(declared)
    assert len(set(samples)) == len(samples)


def test_only_counters_with_bounded_labels_have_children() -> None:
    """Children are every combination of bounded values, for counters whose labels are bounded."""
    kind, outcome = Label("kind", ("a", "b")), Label("outcome", ("x", "y"))
    assert Family("c", "counter", "", (kind, outcome)).children() == [
        ("a", "x"),
        ("a", "y"),
        ("b", "x"),
        ("b", "y"),
    ]
    assert Family("c", "counter", "", (kind, Label("free"))).children() == []
    assert Family("c", "counter", "").children() == []
    assert Family("g", "gauge", "", (kind,)).children() == []


def test_only_reachable_pairs_are_children_where_declared() -> None:
    """A family with reachable pairs pre-creates those pairs only, whatever the label order."""
    kind, outcome = Label("kind", ("a", "b")), Label("outcome", ("x", "y"))
    pairs = frozenset({("a", "x"), ("b", "y")})
    family = Family("c", "counter", "", (outcome, kind), reachable=("kind", "outcome", pairs))
    assert family.children() == [("x", "a"), ("y", "b")]


def test_notification_children_are_the_outcomes_the_recorder_can_give() -> None:
    """Each kind has its one outcome and duplicate, for every source; validation messages are
    never counted."""
    pairs = [
        ("run", "recorded"),
        ("run", "duplicate"),
        ("start", "recorded"),
        ("start", "duplicate"),
        ("alert", "recorded"),
        ("alert", "duplicate"),
        ("other_service", "duplicate"),
        ("other_service", "ignored"),
        ("unknown", "duplicate"),
        ("unknown", "dead_lettered"),
    ]
    sources = ["webhook", "journal", "flow_service"]
    expected = [(source, kind, outcome) for source in sources for kind, outcome in pairs]
    assert families.NOTIFICATIONS.children() == expected


def test_self_metrics_expose_no_created_series() -> None:
    """No self-metric counter or histogram has a `_created` sample."""
    registry = CollectorRegistry()
    SelfMetrics(registry, verification_on=True, adobe_apis=list(AdobeApi))
    names = {sample.name for metric in registry.collect() for sample in metric.samples}
    assert "aep_exporter_notifications_total" in names
    assert [name for name in names if name.endswith("_created")] == []


@pytest.mark.parametrize("adobe", [False, True], ids=["without_adobe", "with_adobe"])
def test_self_metrics_register_exactly_the_declared_self_families(adobe: bool) -> None:
    """SelfMetrics registers the self families in order, with their type, help and labels;
    the Adobe families only with the Adobe APIs configured."""
    registry = CollectorRegistry()
    metrics = SelfMetrics(
        registry, verification_on=True, adobe_apis=list(AdobeApi) if adobe else ()
    )
    metrics.last_notification.set(1.0)  # absent until it has a value
    if adobe:
        metrics.token_expiry.set(2.0)
    declared = [f for f in SELF_FAMILIES if adobe or f not in ADOBE_SELF_FAMILIES]
    collected = [m for m in registry.collect() if not m.name.startswith(("process_", "python_"))]
    assert [(m.name, m.type, m.documentation) for m in collected] == [
        (f.name, f.type, f.help) for f in declared
    ]
    wrappers = {m._name: m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    for family, metric in zip(declared, collected, strict=True):
        wrapper = wrappers.get(family.name)
        assert (tuple(wrapper._labelnames) if wrapper else ()) == family.label_names, family.name
        labelled = [s for s in metric.samples if s.name == f"{family.name}_total"]
        if family.children():
            children = [tuple(s.labels[n] for n in family.label_names) for s in labelled]
            assert children == family.children(), family.name
        elif family.type == "counter" and family.labels:
            assert labelled == [], family.name


def test_adobe_request_counters_exist_for_the_configured_apis_only() -> None:
    """Every result of a configured API exists at 0; an API not configured has no series."""
    registry = CollectorRegistry()
    SelfMetrics(registry, verification_on=True, adobe_apis=[AdobeApi.IMS, AdobeApi.REGISTRATION])
    name = f"{families.ADOBE_REQUESTS.name}_total"
    for result in RequestResult:
        for api in AdobeApi:
            value = registry.get_sample_value(name, {"api": api.value, "result": result.value})
            assert value == (0.0 if api in (AdobeApi.IMS, AdobeApi.REGISTRATION) else None)


def test_self_histograms_use_the_declared_buckets() -> None:
    """The self histograms expose exactly the declared bucket bounds, then +Inf."""
    registry = CollectorRegistry()
    SelfMetrics(registry, verification_on=False)
    histograms = [f for f in SELF_FAMILIES if f.type == "histogram"]
    assert histograms
    for family in histograms:
        bounds = [
            s.labels["le"]
            for m in registry.collect()
            if m.name == family.name
            for s in m.samples
            if s.name.endswith("_bucket")
        ]
        assert bounds == [str(float(b)) for b in family.buckets] + ["+Inf"], family.name


def readme_tables() -> dict[str, tuple[str, dict[str, tuple[str, ...]]]]:
    """The README's metric tables: (type, {label: listed values}) by each name in a row."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {}
    columns: list[str] = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "metric":
            columns = cells
        elif line.startswith("| `"):
            labels = cells[next(i for i, c in enumerate(columns) if "labels" in c)]
            listed = {
                name: tuple(v.strip() for v in values.strip(" ,;").split(",")) if values else ()
                for name, values in _README_LABEL.findall(labels)
            }
            for name in re.findall(r"`([^`]+)`", cells[0]):
                rows[name] = (cells[columns.index("type")], listed)
    return rows


def readme_name(family: Family) -> str:
    """How the README names a family: counters by their sample name, the others by theirs."""
    return family.sample_names[0] if family.type == "counter" else family.name


@pytest.mark.parametrize("family", FLOW_FAMILIES + SELF_FAMILIES, ids=lambda f: f.name)
def test_the_readme_documents_every_family(family: Family) -> None:
    """Each declared family has a README row with its type, its labels and their values."""
    rows = readme_tables()
    assert readme_name(family) in rows
    documented_type, labels = rows[readme_name(family)]
    assert documented_type.split(" ")[0] == family.type
    assert tuple(labels) == family.label_names
    for label in family.labels:
        assert labels[label.name] in {(), label.values}, label.name


def test_the_readme_names_no_undeclared_metric() -> None:
    """Every aep_* name the README mentions is declared (or a rule group or recorded series)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    declared = exposed_sample_names() | {f.name for f in FLOW_FAMILIES + SELF_FAMILIES}
    groups = {rule.group for rule in load_rules()}
    mentioned = set(re.findall(r"\baep_[a-z0-9_]+\b(?!:)", readme))
    assert mentioned - declared - groups == set()
    assert set(readme_tables()) <= declared
