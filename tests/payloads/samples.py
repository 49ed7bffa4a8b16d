"""Payload samples for the payload tests: the fixture files and small documents built in code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from exporter.domain import Document, FlowAlert, FlowRun, FlowStart
from exporter.normalize import normalize_body

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
# A pinned receipt time: normalization must not depend on the clock.
RECEIVED_AT = 1_800_000_000.0
FLOW_ID = "1c6f1047-dcaf-48fe-af10-47dcaf08feaf"
RUN_ID = "933cf9f4-cf01-4d75-bcf9-f4cf010d750a"


def fixture_bytes(name: str) -> bytes:
    """Return the bytes of one file of tests/fixtures."""
    return (FIXTURES_DIR / name).read_bytes()


def fixture_names() -> list[str]:
    """Return the names of every payload fixture file."""
    return sorted(path.name for path in FIXTURES_DIR.glob("*.json"))


def normalize(body: bytes, header_event_id: str | None = None) -> list[Document]:
    """Normalize a body at the pinned receipt time."""
    return normalize_body(body, received_at=RECEIVED_AT, header_event_id=header_event_id)


def only(body: bytes, header_event_id: str | None = None) -> Document:
    """Normalize a body that must hold exactly one document, and return it."""
    documents = normalize(body, header_event_id)
    assert len(documents) == 1, documents
    return documents[0]


def encode(value: Any) -> bytes:
    """Encode a JSON value as a delivery body."""
    return json.dumps(value).encode()


def run_doc(metrics: Any = None, **fields: Any) -> dict[str, Any]:
    """A bare run object (alert schema) that succeeded, with fields overridden."""
    document: dict[str, Any] = {
        "id": RUN_ID,
        "flowId": FLOW_ID,
        "sandboxName": "prod",
        "metrics": {"statusSummary": {"status": "success"}} if metrics is None else metrics,
    }
    document.update(fields)
    return document


def as_run(document: Document) -> FlowRun:
    """The document's FlowRun (fails the test if it is anything else)."""
    assert isinstance(document.event, FlowRun), document
    return document.event


def as_start(document: Document) -> FlowStart:
    """The document's FlowStart (fails the test if it is anything else)."""
    assert isinstance(document.event, FlowStart), document
    return document.event


def as_alert(document: Document) -> FlowAlert:
    """The document's FlowAlert (fails the test if it is anything else)."""
    assert isinstance(document.event, FlowAlert), document
    return document.event
