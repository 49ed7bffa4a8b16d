"""What every backend stores the same way: flow records and dead-letter recipients as text, the
probe's row name."""

from __future__ import annotations

import json

from pydantic_core import PydanticSerializationError, to_json

from exporter.domain import Recipients
from exporter.records import FlowState

# The readiness probe's row, in a table every schema has; no pull source has this name.
PROBE_SOURCE = "(readiness probe)"


def record_text(state: FlowState) -> str:
    """A flow record as the ASCII JSON text the backends store (read back with `json.loads`).

    pydantic-core's encoder writes what `json.dumps` would (non-finite floats as the same
    `NaN`/`Infinity` constants) in a quarter of the time, and a record is written at every change.
    A record with non-ASCII text (a name, say) is written by `json` with its escapes, as before:
    ASCII needs no care about a PostgreSQL database's encoding, and a lone surrogate is no UTF-8.
    """
    data = state.to_json()
    try:
        text = to_json(data, inf_nan_mode="constants").decode()
    except PydanticSerializationError:
        return _RECORD.encode(data)
    return text if text.isascii() else _RECORD.encode(data)


_RECORD = json.JSONEncoder(separators=(",", ":"))


def recipients_to_text(recipients: Recipients) -> str:
    """A dead letter's recipients as the text the backends store."""
    return json.dumps({"ids": sorted(recipients.ids), "unmatchable": recipients.unmatchable})


def recipients_from_text(text: str | None) -> Recipients | None:
    """A dead letter's stored recipients; what cannot be read back is unmatchable."""
    if text is None:
        return None
    try:
        data = json.loads(text)
        ids, unmatchable = data["ids"], data["unmatchable"]
    except (ValueError, TypeError, KeyError):
        return Recipients(unmatchable=True)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return Recipients(unmatchable=True)
    return Recipients(frozenset(ids), unmatchable is not False)
