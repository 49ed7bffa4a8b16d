"""Every dashboard query parses as PromQL, checked by the real promtool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.dashboards.queries import (
    panel_queries,
    substitute_variables,
    variable_promql,
    variable_queries,
)
from tests.support import require_tool, run_tool

# Concrete values for every variable the dashboards use, as Grafana would interpolate them.
VALUES = {
    "__rate_interval": "2m",
    "__interval": "30s",
    "__range": "1h",
    "sandbox": "prod",
    "flow": "1c6f1047-dcaf-48fe-af10-47dcaf08feaf",
    "instance": ".*",
    "cluster": ".*",
}


def test_every_query_parses(dashboards: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """promtool accepts every panel and variable query, with variables substituted."""
    promtool = require_tool("promtool")
    exprs = []
    for dashboard in dashboards.values():
        exprs += [expr for _, expr in panel_queries(dashboard)]
        exprs += [variable_promql(query) for _, query in variable_queries(dashboard)]
    rules = [
        {"record": f"dashboard_check:query_{index}", "expr": substitute_variables(expr, VALUES)}
        for index, expr in enumerate(exprs)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run_tool([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
