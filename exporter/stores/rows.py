"""What every backend stores the same way: dead-letter recipients as text, the probe's row name."""

from __future__ import annotations

import json

from exporter.domain import Recipients

# The readiness probe's row, in a table every schema has; no pull source has this name.
PROBE_SOURCE = "(readiness probe)"


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
