"""Decode a delivery body safely: UTF-8 JSON, nesting bounded in linear time."""

from __future__ import annotations

import json
import operator
import re
from itertools import accumulate, count
from typing import Any, Literal

from exporter.domain import ExporterError

# A JSON string (escapes included) up to its closing quote, or to the end of an unterminated body.
# The alternatives always succeed on their first path, so matching never backtracks: linear time.
JSON_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)'
_JSON_STRING = re.compile(JSON_STRING, re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# Opening brackets become 2, closing ones 0, so that `byte - 1` is the step of the nesting depth.
_DEPTH_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_DEPTH_CHUNK = 1 << 16


class PayloadError(ExporterError):
    """The whole delivery body is unusable: not UTF-8 JSON (`invalid_json`) or nested too deep."""

    def __init__(self, reason: Literal["invalid_json", "too_deep"], detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: str = reason
        self.detail = detail


def nesting_exceeds(text: str, max_depth: int) -> bool:
    """Tell whether JSON text nests brackets deeper than max_depth (brackets in strings aside).

    Linear time, no recursion, and it stops at the first chunk that goes too deep. On text that
    is not JSON it sees at least the depth `json.loads` reaches before its first error.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    steps = brackets.encode("ascii").translate(_DEPTH_STEPS)
    depth = 0
    for start in range(0, len(steps), _DEPTH_CHUNK):
        chunk = steps[start : start + _DEPTH_CHUNK]
        # Depth after the i-th bracket of the chunk = depth + (sum of its first i steps) - i.
        deepest = max(map(operator.sub, accumulate(chunk), count(1)))
        if depth + deepest > max_depth:
            return True
        depth += sum(chunk) - len(chunk)
    return False


def decode_body(body: bytes, *, max_depth: int = 64) -> Any:
    """JSON-decode raw bytes (UTF-8, BOM tolerated), refusing nesting deeper than max_depth."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PayloadError("invalid_json", "body is not UTF-8") from exc
    # No body can nest deeper than it has opening brackets: a delivery with fewer than the
    # limit (one document has about twenty) needs no scan, and the scan decides the rest.
    if body.count(b"[") + body.count(b"{") > max_depth and nesting_exceeds(text, max_depth):
        raise PayloadError("too_deep", f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError as exc:  # only if max_depth exceeds what the interpreter's stack allows
        raise PayloadError("too_deep", "JSON nested deeper than the parser allows") from exc
    except ValueError as exc:  # JSONDecodeError, or an integer beyond Python's digit limit
        raise PayloadError("invalid_json", str(exc)[:200]) from exc
