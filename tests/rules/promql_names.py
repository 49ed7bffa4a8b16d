"""Metric names and range windows a PromQL expression reads, for static checks of the rule files.

promtool 2.42 has no command that prints a parsed expression, so this is a small tokenizer: an
identifier is a metric name unless it is a keyword, a function (followed by `(`), a label name
(inside `{…}` or a `by (…)`-style list) or a duration.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)(?![\w.])
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<step>:)(?=\d)  # a subquery's [range:step], not a name starting with a colon
  | (?P<ident>[A-Za-z_:][\w:]*)
  | (?P<punct>=~|!~|!=|==|<=|>=|[-+*/%^(){}\[\],=<>:@])
    """,
    re.VERBOSE,
)

# Followed by a parenthesised list of label names.
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
# Never metric names (PromQL keywords are case-insensitive).
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
        # aggregation operators, which may be followed by `by (…)` instead of `(`
        "sum",
        "avg",
        "count",
        "min",
        "max",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
        "limit_ratio",
    }
)
_NOT_NAMES = _KEYWORDS | _LABEL_LISTS
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION_PART = re.compile(r"(\d+)(ms|[smhdwy])")
# Queries inside alert templates: {{ query "expr" }} and {{ printf "expr with %q" … | query }}.
_TEMPLATE_QUERY = re.compile(r'(?:query|printf)\s+"((?:\\.|[^"\\])*)"')


def tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) tokens of `expr`, without whitespace and comments; ValueError on junk."""
    result: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot tokenize {expr[pos : pos + 20]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind not in {"space", "comment"}:
            result.append((kind, match.group()))
        pos = match.end()
    return result


def metric_names(expr: str) -> set[str]:
    """Names of the series `expr` selects."""
    toks = tokens(expr)
    names: set[str] = set()
    braces = 0
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        if text == "{":
            braces += 1
        elif text == "}":
            braces -= 1
        elif kind == "ident" and braces:
            if text == "__name__":
                operator, value = toks[i + 1][1], toks[i + 2]
                if operator != "=" or value[0] != "string":
                    raise ValueError(f'only __name__="…" is understood: {expr!r}')
                names.add(value[1][1:-1])
                i += 2
        elif kind == "ident" and text.lower() in _LABEL_LISTS and following == "(":
            i = toks.index((("punct", ")")), i)
        elif kind == "ident" and text.lower() not in _NOT_NAMES and following != "(":
            names.add(text)
        i += 1
    return names


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
