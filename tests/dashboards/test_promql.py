"""The PromQL scanner the dashboard checks rely on."""

from __future__ import annotations

import pytest

from tests.promql import (
    grafana_variables,
    metric_names,
    range_windows,
    substitute_variables,
)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("rate(foo_total[5m])", {"foo_total"}),
        (
            'sum by (job, instance) (rate(http_total{code=~"5.."}[$__rate_interval]))',
            {"http_total"},
        ),
        ('max without (instance, pod) (aep_flow_info{sandbox=~"$sandbox"})', {"aep_flow_info"}),
        ("a * on (x) group_left (y, z) b", {"a", "b"}),
        ("a / ignoring (le) group_right b", {"a", "b"}),
        ("topk by (sandbox) (1, x > 0)", {"x"}),
        ("histogram_quantile(0.95, sum by (le) (rate(h_bucket[1m])))", {"h_bucket"}),
        ("count(x == 0) or vector(0)", {"x"}),
        ("time() - y", {"y"}),
        ('{__name__="z", job="j"}', {"z"}),
        ("aep_flow:success_ratio:ratio_rate1d > 0", {"aep_flow:success_ratio:ratio_rate1d"}),
        ("x > bool y unless z", {"x", "y", "z"}),
        ("x AND y OR z", {"x", "y", "z"}),
        ('label_replace(x, "dst", "$1", "src", "(.*)")', {"x"}),
        ("sum(x) # a comment naming fake_metric", {"x"}),
        ("max_over_time(x[1h:5m]) offset 1d", {"x"}),
        ("x @ start()", {"x"}),
        ("1e3 * x + 0x1f - .5 + Inf", {"x"}),
        ('x{l="by (y)"}', {"x"}),
        ("group by (a, b) (x)", {"x"}),
        ('count_values("v", x)', {"x"}),
        ("x[$__range] and y[${__rate_interval}] and z[[[interval]]]", {"x", "y", "z"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    """Metric names come out; functions, keywords, labels, numbers and variables do not."""
    assert metric_names(expr) == names


@pytest.mark.parametrize("expr", ["rate(x[5m)", "sum by (a (x)", 'x{a="b"', "x ~ y", "x $"])
def test_metric_names_refuses_malformed(expr: str) -> None:
    """An unbalanced bracket or an unknown character is an error, not a silent pass."""
    with pytest.raises(ValueError, match="PromQL"):
        metric_names(expr)


def test_range_windows() -> None:
    """Range selectors and subqueries yield their window text."""
    expr = 'rate(x[$__rate_interval]) / increase(y{a="[1h]"}[1d]) + max_over_time(z[1h:5m])'
    assert range_windows(expr) == ["$__rate_interval", "1d", "1h:5m"]


def test_grafana_variables() -> None:
    """Every variable syntax is recognised; regex back-references are not variables."""
    text = 'x{a="$a", b=~"${b}", c="${c:regex}", d="[[d]]", e="$1"}[$__range]'
    assert grafana_variables(text) == {"a", "b", "c", "d", "__range"}


def test_substitute_variables() -> None:
    """Variables are replaced whole-word, so $__range and $__range_s stay distinct."""
    expr = 'increase(x{s="$sandbox", f="${flow}"}[$__rate_interval]) / $__range_s + y[$__range]'
    values = {
        "sandbox": "prod",
        "flow": "f-1",
        "__rate_interval": "2m",
        "__range_s": "3600",
        "__range": "1h",
    }
    assert substitute_variables(expr, values) == (
        'increase(x{s="prod", f="f-1"}[2m]) / 3600 + y[1h]'
    )


def test_substitute_variables_keeps_backreferences() -> None:
    """A `$1` inside label_replace is not a variable."""
    expr = 'label_replace(x, "d", "$1", "s", "(.*)")'
    assert substitute_variables(expr, {}) == expr


def test_substitute_variables_refuses_missing_values() -> None:
    """A variable without a value raises instead of leaving `$var` in the query."""
    with pytest.raises(KeyError, match="flow"):
        substitute_variables('x{f="$flow"}', {})


def test_substitute_variables_refuses_formats() -> None:
    """A formatted variable raises: its escaping is Grafana's, not ours."""
    with pytest.raises(ValueError, match="format"):
        substitute_variables('x{f=~"${flow:regex}"}', {"flow": "a"})
