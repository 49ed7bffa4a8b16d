"""Read recipient ids: every one a body names anywhere, and the one at a document's envelope.

I/O Events puts `recipientclientid` (and the deprecated `recipient_client_id`) on the envelope of
each event it delivers (protocol notes §1.2, §18.11). What is inside the envelope — the
`event`/`data`/`value` payload and the messages of the `messages` form — is the event
provider's text, so an id there proves nothing about whom the delivery is for; but any id that is
not ours, wherever it appears, means the delivery may be meant for someone else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from exporter.domain import NO_RECIPIENTS, Recipients
from exporter.normalize.values import ID_LIMIT, SURROGATE
from exporter.payloads.canonical import canonical_json
from exporter.payloads.decode import JSON_STRING

# The current name first: it wins at the envelope when both are present (protocol notes §1.2).
FIELDS = ("recipientclientid", "recipient_client_id")
# One delivery is for one registration; a body naming more distinct ids than this is unmatchable
# rather than kept whole (a dead letter stores them, and the store must stay bounded).
MAX_IDS = 16


def _spelled(name: str) -> str:
    """A pattern for the JSON text of `name`: each character literal or as a \\uXXXX escape."""
    return "".join(f"(?:{re.escape(char)}|\\\\u(?i:{ord(char):04x}))" for char in name)


_NAMES = "|".join(_spelled(name) for name in FIELDS)
# One match: everything up to the next recipient key, then that key and the start of its value.
# The skipped part is consumed whole, string by string (a quote opens a string, escapes
# included), so a quote inside a string never starts a key: the reading agrees with json.loads
# on every valid body. The loops are possessive, JSON_STRING never backtracks, and the lookahead
# reads one key name and the whitespace after it (each character at most twice in all), so the
# scan is linear in the body and never recurses: 2 MiB of worst-case text takes about as long as
# the nesting check of decode.py.
_SCAN = re.compile(
    rf'(?:[^"]++|(?!"(?:{_NAMES})"\s*+:){JSON_STRING})*+'
    rf'(?:("(?:{_NAMES})")\s*+:\s*+(?:({JSON_STRING})|(null)|(.?)))?',
    re.DOTALL,
)


def read_recipients(body: bytes) -> Recipients:
    """Every recipient id the raw body names, at any depth, whether it parses or not."""
    # The raw text, not the decoded value: a body nested too deep, not JSON, or of an unknown
    # shape is read exactly like a good one, in one linear pass, so no shape, depth or parse
    # failure can hide a foreign id. A value that is not a string (or not a complete one) is
    # unmatchable; `null` and empty strings name no one.
    text = body.decode("utf-8", "replace")
    # Either name spelled without escapes contains "recipient"; with one, it contains "\u".
    if "recipient" not in text and "\\u" not in text:
        return NO_RECIPIENTS
    ids: set[str] = set()
    unmatchable = False
    for match in _SCAN.finditer(text):
        key, string, null = match.group(1, 2, 3)
        if key is None or null is not None:
            continue
        value = _decoded(string) if string is not None else None
        if value is None:
            unmatchable = True
        elif value:
            ids.add(value)
    return _bounded(ids, unmatchable)


def union(first: Recipients, second: Recipients) -> Recipients:
    """The recipients of both (a dead letter's stored ones and what its body says)."""
    return _bounded(first.ids | second.ids, first.unmatchable or second.unmatchable)


def envelope_recipient(envelope: Mapping[str, Any]) -> str | None:
    """`recipientclientid`, else `recipient_client_id`, of one envelope object."""
    # A present value that is not a string is kept as its JSON text: read_recipients has already
    # marked it unmatchable, and as text it cannot pass for a configured client id either.
    for name in FIELDS:
        value = envelope.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            return canonical_json(value).decode()[:ID_LIMIT]
        text = _clean(value)
        if text:
            return text
    return None


def _decoded(token: str) -> str | None:
    """A JSON string token's cleaned text; None when it cannot be one of our client ids."""
    if "\\" not in token and len(token) > 1 and token[-1] == '"':
        value = token[1:-1]  # no escapes: the text between the quotes, without a decoder
    else:
        try:
            value = json.loads(token)
        except ValueError:  # unterminated: the body ended inside it
            return None
    text = _clean(value)
    # An Adobe client id is 32 characters; nothing longer than an id may be can match one.
    return None if len(text) > ID_LIMIT else text


def _clean(value: str) -> str:
    return SURROGATE.sub("\ufffd", value.strip())


def _bounded(ids: Iterable[str], unmatchable: bool) -> Recipients:
    kept = frozenset(ids)
    if len(kept) > MAX_IDS:
        return Recipients(frozenset(sorted(kept)[:MAX_IDS]), unmatchable=True)
    return Recipients(kept, unmatchable)
