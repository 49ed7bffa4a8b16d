"""De-duplication identity: every key a document can be known by, built and recognised here.

A document is a duplicate if any of its keys was seen (protocol notes §18.7). The keys are
stored as text, so their spelling is part of every existing state store: never change one.

- event id, `event:<id>`: the document's own `eventid`/`event_id`, and the `x-adobe-event-id`
  header when the body holds exactly one document (protocol notes §1.6);
- run, `run:<run id>:<success|failed>`: a completed run; webhook, journal and Flow Service agree;
- start, `run:<run id>:started`: a start notification;
- alert, `alert:<sandbox>:<flow>:<alert>:<status>:<document time>`: an Adobe alert document;
- content, `sha256:<hex>`: a document without a domain key (dead letters, other services), by
  its canonical JSON; dead letters are also known by this digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from exporter.domain import AlertKind, FlowKey, Outcome

_CONTENT_PREFIX = "sha256:"


def event_key(event_id: str) -> str:
    """The key of an I/O Events event id (the document's own, or the delivery header's)."""
    return f"event:{event_id}"


def run_key(run_id: str, outcome: Outcome) -> str:
    """The domain key of a completed run: (run id, outcome)."""
    return f"run:{run_id}:{outcome.value}"


def start_key(run_id: str) -> str:
    """The domain key of a run's start notification."""
    return f"run:{run_id}:started"


def completion_keys(run_id: str) -> list[str]:
    """Every key a completion of this run would have had (a start after its end stays closed)."""
    return [run_key(run_id, outcome) for outcome in Outcome]


def alert_key(flow: FlowKey, alert: AlertKind, status: str, at: float | None) -> str:
    """The domain key of an alert document: flow, alert, status and the document's own time."""
    moment = "none" if at is None else repr(at)
    return f"alert:{flow.sandbox}:{flow.flow_id}:{alert.value}:{status}:{moment}"


def content_key(raw: bytes) -> str:
    """The key of a document without a domain key: the SHA-256 of its canonical JSON."""
    return _CONTENT_PREFIX + hashlib.sha256(raw).hexdigest()


def content_digest(keys: Iterable[str], raw: bytes) -> str:
    """The hex digest a dead letter is known by: its content key's, else its raw bytes' hash."""
    for key in keys:
        if key.startswith(_CONTENT_PREFIX):
            return key.removeprefix(_CONTENT_PREFIX)
    return hashlib.sha256(raw).hexdigest()
