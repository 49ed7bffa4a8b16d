"""Range windows and alert-template queries of the rule files (metric names: tests.promql).

promtool 2.42 has no command that prints a parsed expression, so the checks tokenize PromQL with
the scanner the dashboard checks use.
"""

from __future__ import annotations

import re

from tests.promql import metric_names, tokens

__all__ = ["duration_seconds", "metric_names", "range_windows", "template_queries"]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION_PART = re.compile(r"(\d+)(ms|[smhdwy])")
# Queries inside alert templates: {{ query "expr" }} and {{ printf "expr with %q" … | query }}.
_TEMPLATE_QUERY = re.compile(r'(?:query|printf)\s+"((?:\\.|[^"\\])*)"')


def range_windows(expr: str) -> list[float]:
    """Seconds of every range and subquery window in `expr` (`offset` is not a window)."""
    toks = tokens(expr)
    windows = []
    for i, (kind, text) in enumerate(toks):
        if kind == "duration" and i and toks[i - 1][1] == "[":
            windows.append(duration_seconds(text))
    return windows


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration such as `1h30m`."""
    return float(sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text)))


def template_queries(template: str) -> list[str]:
    """Expressions queried by an alert template, with printf's %q placeholders filled in."""
    queries = []
    for literal in _TEMPLATE_QUERY.findall(template):
        expr = literal.replace('\\"', '"').replace("\\\\", "\\")
        queries.append(expr.replace("%q", '""'))
    return queries
