"""The committed dashboards as data: their panels, queries and what a fed scenario fills.

For the end-to-end test: `fed_queries()` lists every panel query with the expectation the generator
(grafana/build.py, FED_SCENARIO) records; `substitute_variables` makes a query runnable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana import build
from tests.promql import substitute_variables

__all__ = [
    "DASHBOARD_DIR",
    "PanelQuery",
    "fed_queries",
    "load_dashboards",
    "panel_queries",
    "panels",
    "substitute_variables",
    "variable_promql",
    "variable_queries",
]

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
# Panels that show or structure, and query nothing.
NON_QUERY_PANELS = frozenset({"row", "text"})


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Committed dashboard JSON by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every query, in panel order."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def variable_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(variable name, Grafana query string) of every Prometheus query variable."""
    out = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            out.append((variable["name"], query["query"] if isinstance(query, dict) else query))
    return out


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$", re.DOTALL)
_QUERY_RESULT = re.compile(r"^query_result\((?P<expr>.+)\)$", re.DOTALL)


def variable_promql(query: str) -> str:
    """The PromQL inside a Grafana variable query: label_values(sel, label) or query_result(e)."""
    query = query.strip()
    if match := _LABEL_VALUES.match(query):
        return match.group("selector")
    if match := _QUERY_RESULT.match(query):
        return match.group("expr")
    raise ValueError(f"not a label_values(selector, label) or query_result(…) query: {query!r}")


@dataclass(frozen=True, slots=True)
class PanelQuery:
    """One committed panel query and whether build.FED_SCENARIO fills it."""

    dashboard_uid: str
    panel_title: str
    ref_id: str
    expr: str
    instant: bool
    empty_reason: str  # "" when the fed scenario must return at least one series

    @property
    def expects_data(self) -> bool:
        """Whether the fed scenario must return at least one series for this query."""
        return not self.empty_reason


def fed_queries() -> list[PanelQuery]:
    """Every committed panel query, with the generator's expectation under FED_SCENARIO."""
    expected = build.expectations()
    out = []
    for dashboard in load_dashboards().values():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                key = (dashboard["uid"], panel["title"], target["refId"])
                out.append(
                    PanelQuery(
                        dashboard_uid=key[0],
                        panel_title=key[1],
                        ref_id=key[2],
                        expr=target["expr"],
                        instant=bool(target.get("instant")),
                        empty_reason=expected[key],
                    )
                )
    return out
