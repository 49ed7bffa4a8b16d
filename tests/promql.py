"""A small PromQL scanner for rule and dashboard checks: metric names, windows, variables."""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$[A-Za-z_]\w*|\[\[[A-Za-z_]\w*(?::\w+)?\]\])
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)(?![\w.])
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][\w:]*)
  | (?P<punct>=~|!~|!=|==|<=|>=|[-+*/%^(){}\[\],=<>@:])
    """,
    re.VERBOSE,
)

# Keywords followed by a parenthesised list of label names (not metrics).
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
# Words that are never metric names wherever they stand (PromQL keywords are case-insensitive).
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
        # aggregation operators, which may be followed by `by (…)` rather than `(`
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
_VARIABLE = re.compile(
    r"\$\{(?P<braced>[A-Za-z_]\w*)(?::(?P<format>[^}]*))?\}"
    r"|\$(?P<plain>[A-Za-z_]\w*)"
    r"|\[\[(?P<old>[A-Za-z_]\w*)(?::(?P<old_format>\w+))?\]\]"
)


def tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) tokens of `expr` without whitespace and comments; ValueError on junk."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot tokenize PromQL at {pos}: {expr[pos : pos + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind not in {"space", "comment"}:
            out.append((kind, match.group()))
        pos = match.end()
    return out


def _closing(toks: list[tuple[str, str]], start: int, opening: str, closing: str) -> int:
    """Index of the token closing the bracket at `start`."""
    depth = 0
    for index in range(start, len(toks)):
        text = toks[index][1]
        if toks[index][0] == "punct" and text == opening:
            depth += 1
        elif toks[index][0] == "punct" and text == closing:
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced {opening!r} in PromQL")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads; not functions, keywords, labels or Grafana variables."""
    toks = tokens(expr)
    names: set[str] = set()
    index = 0
    while index < len(toks):
        kind, text = toks[index]
        following = toks[index + 1][1] if index + 1 < len(toks) else ""
        if kind == "punct" and text == "{":
            end = _closing(toks, index, "{", "}")
            names.update(_name_matchers(toks[index + 1 : end]))
            index = end
        elif kind == "punct" and text == "[":
            index = _closing(toks, index, "[", "]")
        elif kind == "ident" and text.lower() in _LABEL_LIST_KEYWORDS:
            if following == "(":
                index = _closing(toks, index + 1, "(", ")")
        elif kind == "ident" and text.lower() not in _KEYWORDS and following != "(":
            names.add(text)
        index += 1
    return names


def _name_matchers(inside: list[tuple[str, str]]) -> set[str]:
    """Metric names given as `__name__="…"` inside a selector's braces."""
    return {
        inside[i + 2][1][1:-1]
        for i in range(len(inside) - 2)
        if inside[i] == ("ident", "__name__")
        and inside[i + 1] == ("punct", "=")
        and inside[i + 2][0] == "string"
    }


def range_windows(expr: str) -> list[str]:
    """The text inside every `[…]` (range selectors and subqueries), in order."""
    toks = tokens(expr)
    windows: list[str] = []
    index = 0
    while index < len(toks):
        if toks[index] == ("punct", "["):
            end = _closing(toks, index, "[", "]")
            windows.append("".join(text for _, text in toks[index + 1 : end]))
            index = end
        index += 1
    return windows


def grafana_variables(text: str) -> set[str]:
    """Names of the Grafana variables in `text` ($var, ${var}, ${var:fmt}, [[var]])."""
    return {
        next(name for name in match.group("braced", "plain", "old") if name)
        for match in _VARIABLE.finditer(text)
    }


def substitute_variables(expr: str, values: Mapping[str, str]) -> str:
    """Replace Grafana variables ($__rate_interval, $__range, ${var}, $var, …) with `values`.

    Values are inserted verbatim, as Grafana does for a single-valued variable; a variable without
    a value, or with a format (`${var:regex}`), raises KeyError / ValueError.
    """

    def replace(match: re.Match[str]) -> str:
        name = next(n for n in match.group("braced", "plain", "old") if n)
        if match.group("format") or match.group("old_format"):
            raise ValueError(f"variable formats are not supported: {match.group()}")
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)
