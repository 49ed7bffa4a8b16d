"""JSON text of decoded values: the canonical form a document's identity and dead letter hold, and
the compact form a pull source hands a fetched document on in."""

from __future__ import annotations

import json
from typing import Any

# Built once: json.dumps builds an encoder per call whenever an option differs from its default.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_CANONICAL_ASCII = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_COMPACT_ASCII = json.JSONEncoder(separators=(",", ":"))


def canonical_json(value: Any) -> bytes:
    """Return the canonical JSON bytes of a decoded value (sorted keys, no spaces, UTF-8)."""
    return _utf8(value, _CANONICAL, _CANONICAL_ASCII)


def compact_json(value: Any) -> bytes:
    """Return a decoded value as compact JSON bytes in its own key order (UTF-8): a document a
    pull source fetched, as the body the pipeline reads."""
    return _utf8(value, _COMPACT, _COMPACT_ASCII)


def _utf8(value: Any, encoder: json.JSONEncoder, escaping: json.JSONEncoder) -> bytes:
    text = encoder.encode(value)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate (`"\ud800"` is valid JSON) cannot be UTF-8: it stays escaped instead,
        # and reads back the same.
        return escaping.encode(value).encode()
