"""The canonical JSON form of a decoded value: what a document's identity and dead letter hold."""

from __future__ import annotations

import json
from typing import Any

# Built once: json.dumps builds an encoder per call whenever an option differs from its default.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_CANONICAL_ASCII = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def canonical_json(value: Any) -> bytes:
    """Return the canonical JSON bytes of a decoded value (sorted keys, no spaces, UTF-8)."""
    text = _CANONICAL.encode(value)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate (`"\ud800"` is valid JSON) cannot be UTF-8: keep it escaped instead.
        return _CANONICAL_ASCII.encode(value).encode()
