"""Property tests: no body makes normalization raise anything but PayloadError (HOUSE-STYLE)."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.domain import (
    Document,
    DocumentKind,
    FlowAlert,
    FlowRun,
    FlowStart,
    OtherService,
    Unrecognized,
    ValidationMessage,
)
from exporter.normalize.values import ANOMALY_FIELDS
from exporter.payloads.decode import PayloadError
from tests.payloads.samples import fixture_bytes, fixture_names, normalize

# Derandomized: the same examples on every run, so CI cannot flake; failures print the example.
PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Field names of every shape, so that random objects often look like real documents.
KEYS = [
    "flowId", "id", "sandboxName", "flowName", "imsOrgId", "metrics", "statusSummary", "status",
    "durationSummary", "startedAtUTC", "completedAtUTC", "updatedAt", "createdAt", "resolvedAt",
    "recordSummary", "sizeSummary", "fileSummary", "inputRecordCount", "failedRecordCount",
    "inputBytes", "errors", "code", "message", "extensions", "failedInfo", "activities", "name",
    "messages", "value", "_eventNotificationMeta", "type", "event", "event_id", "eventid",
    "specversion", "data", "header", "_adobeio", "eventCode", "validationUrl",
    "recipientclientid", "recipient_client_id",
]  # fmt: skip
WORDS = [
    "FIRING", "INACTIVE", "firing", "success", "failed", "inProgress", "sources_flow_run_success",
    "sources_flow_run_failed", "source_flow_run_info", "identity_ingestion_info", "platform_event",
    "sources_flow_run_delay", "error_rate", "2020-08-14T20:10:16Z", "-1", "100", "1597434157567",
    "1.0", "\ud800", "", " ", "CONNECTOR-1001-500", "bad code!",
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-2, max_value=2**54)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(WORDS)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=6)
    ),
    max_leaves=40,
)
LABEL = re.compile(r"[A-Za-z0-9._:-]{1,64}")
EVENT_TYPES: dict[DocumentKind, type] = {
    DocumentKind.RUN: FlowRun,
    DocumentKind.START: FlowStart,
    DocumentKind.ALERT: FlowAlert,
    DocumentKind.OTHER_SERVICE: OtherService,
    DocumentKind.VALIDATION: ValidationMessage,
    DocumentKind.UNKNOWN: Unrecognized,
}


def slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) position inside a JSON value, found without recursion."""
    found: list[tuple[Any, Any]] = []
    pending = [value]
    while pending:
        node = pending.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node))
        for key in keys:
            found.append((node, key))
            if isinstance(node[key], dict | list):
                pending.append(node[key])
    return found


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> bytes:
    """A fixture with a few values replaced by random JSON or removed."""
    value = json.loads(fixture_bytes(draw(st.sampled_from(fixture_names()))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        positions = slots(value)
        if not positions:
            break
        container, key = draw(st.sampled_from(positions))
        if isinstance(container, dict) and draw(st.booleans()):
            del container[key]
        else:
            container[key] = draw(JSON_VALUES)
    return json.dumps(value).encode()


@st.composite
def corrupted_fixtures(draw: st.DrawFn) -> bytes:
    """A fixture with a few bytes overwritten, inserted or cut."""
    body = bytearray(fixture_bytes(draw(st.sampled_from(fixture_names()))))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        index = draw(st.integers(min_value=0, max_value=len(body) - 1))
        body[index : index + draw(st.integers(0, 3))] = draw(st.binary(max_size=3))
    return bytes(body)


def check(body: bytes) -> None:
    """Normalize `body`: only PayloadError may escape, and every document is well formed."""
    reason: str | None = None
    try:
        documents = normalize(body)
    except PayloadError as error:
        documents, reason = [], error.reason
    assert reason in {None, "invalid_json", "too_deep"}
    for document in documents:
        check_document(document)


def check_document(document: Document) -> None:
    """A document's kind, keys, labels and raw bytes keep their contracts."""
    assert isinstance(document.event, EVENT_TYPES[document.kind])
    assert document.dedup_keys
    if document.kind is DocumentKind.UNKNOWN:
        assert document.dedup_keys[-1].startswith("sha256:")
    assert set(document.anomalies) <= ANOMALY_FIELDS
    event = document.event
    if isinstance(event, FlowRun):
        assert all(LABEL.fullmatch(error.code) for error in event.errors)
        assert len({error.code for error in event.errors}) == len(event.errors)
        assert all(LABEL.fullmatch(result.activity) for result in event.activities)
        assert event.duration_seconds is None or event.duration_seconds >= 0
    if isinstance(event, FlowRun | FlowStart | FlowAlert):
        assert event.flow_name is None or 0 < len(event.flow_name) <= 200
    # Dead-letter replay: the raw bytes normalize to the very same document.
    assert normalize(document.raw) == [document]


@PROPERTY_SETTINGS
@given(st.binary(max_size=512))
def test_any_bytes(body: bytes) -> None:
    """Arbitrary bytes raise nothing but PayloadError."""
    check(body)


@PROPERTY_SETTINGS
@given(JSON_VALUES)
def test_any_json_value(value: Any) -> None:
    """Any JSON value, shaped like Adobe documents or not, normalizes without an error."""
    check(json.dumps(value).encode())


@PROPERTY_SETTINGS
@given(st.lists(JSON_VALUES, max_size=5))
def test_any_batch(values: list[Any]) -> None:
    """Any batch of JSON values normalizes without an error."""
    check(json.dumps(values).encode())


@PROPERTY_SETTINGS
@given(mutated_fixtures())
def test_mutated_fixtures(body: bytes) -> None:
    """Fixtures with values replaced or removed normalize without an error."""
    check(body)


@PROPERTY_SETTINGS
@given(corrupted_fixtures())
def test_corrupted_fixtures(body: bytes) -> None:
    """Fixtures with corrupted bytes raise nothing but PayloadError."""
    check(body)
