"""Identity of documents: event ids, recipients, de-duplication keys and replayable raw bytes."""

from __future__ import annotations

import hashlib
import json

import pytest

from exporter.domain import DocumentKind, Unrecognized
from exporter.normalize import MAX_DOCUMENTS
from tests.payloads.samples import (
    RUN_ID,
    as_run,
    encode,
    fixture_bytes,
    fixture_names,
    normalize,
    only,
    run_doc,
)

HEADER_ID = "9e1c4b2a-0d3f-4e5a-8b6c-7d8e9f0a1b2c"


@pytest.mark.parametrize("name", fixture_names())
def test_raw_replays_to_the_same_document(name: str) -> None:
    """Normalizing a document's raw bytes gives the same document (dead-letter replay)."""
    for document in normalize(fixture_bytes(name)):
        assert only(document.raw) == document


def test_raw_of_a_message_keeps_the_inherited_recipient() -> None:
    """A message's raw is `{"messages": [it]}` plus the envelope's recipient fields."""
    message = {"value": run_doc()}
    envelope = {"recipient_client_id": "client-1", "eventid": "envelope-id", "messages": [message]}
    document = only(encode([envelope]))
    assert json.loads(document.raw) == {"recipient_client_id": "client-1", "messages": [message]}
    assert document.recipient == "client-1"
    assert document.event_id is None


def test_raw_is_canonical_json() -> None:
    """Raw is sorted, compact, UTF-8 JSON, and NaN stays a literal."""
    document = only(b'{ "z": NaN, "a": "\\u00e9" }')
    assert document.raw == b'{"a":"\xc3\xa9","z":NaN}'
    assert only(document.raw) == document


def test_raw_with_a_lone_surrogate_stays_parseable() -> None:
    """A lone surrogate (valid JSON, invalid UTF-8) is kept escaped, so raw still replays."""
    document = only(b'{"s": "\\ud800", "a": "\\u00e9"}')
    assert document.raw == b'{"a":"\\u00e9","s":"\\ud800"}'
    assert only(document.raw) == document


def test_header_event_id_is_used_for_a_single_document() -> None:
    """The x-adobe-event-id header keys a body that holds exactly one document."""
    document = only(fixture_bytes("seed_success.json"), HEADER_ID)
    assert document.dedup_keys == (
        "event:aec55616-1715-487f-8044-ba648cc8ffee",
        f"event:{HEADER_ID}",
        "run:933cf9f4-cf01-4d75-bcf9-f4cf010d750a:success",
    )
    assert document.event_id == "aec55616-1715-487f-8044-ba648cc8ffee"


def test_header_event_id_is_ignored_for_several_documents() -> None:
    """A batch's header id identifies no single document, so no document carries it."""
    documents = normalize(fixture_bytes("batch_mixed.json"), HEADER_ID)
    assert len(documents) > 1
    assert all(f"event:{HEADER_ID}" not in document.dedup_keys for document in documents)


def test_header_event_id_equal_to_the_body_id_is_one_key() -> None:
    """The header id repeating the body's event id adds no second key."""
    document = only(fixture_bytes("seed_success.json"), "aec55616-1715-487f-8044-ba648cc8ffee")
    assert document.dedup_keys.count("event:aec55616-1715-487f-8044-ba648cc8ffee") == 1


@pytest.mark.parametrize("header_id", ["", "   ", "two words", "x" * 300])
def test_invalid_header_event_ids_are_ignored(header_id: str) -> None:
    """An empty, spaced or oversized header id is not a key."""
    document = only(fixture_bytes("seed_success.json"), header_id)
    assert len(document.dedup_keys) == 2


def test_both_event_id_fields_are_keys() -> None:
    """eventid and event_id both key the document; eventid is its event id."""
    body = encode({"eventid": "new-id", "event_id": "old-id", "event": run_doc()})
    document = only(body)
    assert document.dedup_keys == ("event:new-id", "event:old-id", f"run:{RUN_ID}:success")
    assert document.event_id == "new-id"


def test_unknown_documents_carry_their_hash_and_event_ids() -> None:
    """An unknown document is keyed by its own event id and the hash of its raw bytes."""
    document = only(encode({"event_id": "e-1", "event": {"nothing": True}}))
    assert document.kind is DocumentKind.UNKNOWN
    assert document.dedup_keys == (
        "event:e-1",
        "sha256:" + hashlib.sha256(document.raw).hexdigest(),
    )


def test_identical_unknown_documents_share_their_hash_key() -> None:
    """The same unknown document delivered twice has the same keys (dead letters stored once)."""
    first, second = normalize(b'[{"a": 1}, {"a" : 1}]')
    assert first.dedup_keys == second.dedup_keys


def test_start_and_completion_have_distinct_keys() -> None:
    """A run's start and its completion are different documents."""
    start = only(encode(run_doc({"statusSummary": {"status": "inProgress"}})))
    completion = only(encode(run_doc()))
    assert start.dedup_keys == (f"run:{RUN_ID}:started",)
    assert completion.dedup_keys == (f"run:{RUN_ID}:success",)


@pytest.mark.parametrize(
    ("document", "recipient"),
    [
        ({"recipientclientid": "a", "recipient_client_id": "b", "event": run_doc()}, "a"),
        ({"recipient_client_id": "b", "event": run_doc()}, "b"),
        ({"event": run_doc(recipientclientid="inner")}, None),
        ({"specversion": "1.0", "data": run_doc(recipientclientid="inner")}, None),
        ({"specversion": "1.0", "data": run_doc(), "recipientclientid": " c "}, "c"),
        ({"recipientclientid": "", "event": run_doc()}, None),
        ({"recipientclientid": 12, "event": run_doc()}, "12"),
        ({"recipientclientid": {"id": "x"}, "event": run_doc()}, '{"id":"x"}'),
        (run_doc(), None),
    ],
)
def test_recipient(document: dict[str, object], recipient: str | None) -> None:
    """The envelope's recipientclientid, else recipient_client_id; never the inner payload's."""
    assert only(encode(document)).recipient == recipient


def test_a_message_has_the_recipient_of_its_messages_envelope() -> None:
    """A message's own recipient field is the provider's text: the envelope's is its recipient."""
    body = encode(
        {"recipientclientid": "env", "messages": [{"recipientclientid": "own", "value": run_doc()}]}
    )
    assert only(body).recipient == "env"
    alone = encode({"messages": [{"recipientclientid": "own", "value": run_doc()}]})
    assert only(alone).recipient is None


def test_too_many_documents_become_one_unknown_document() -> None:
    """A body splitting into more than MAX_DOCUMENTS documents is one unknown document."""
    body = encode([run_doc(id=f"run-{index}") for index in range(MAX_DOCUMENTS + 1)])
    document = only(body, HEADER_ID)
    assert document.event == Unrecognized(f"more than {MAX_DOCUMENTS} documents in one body")
    assert document.dedup_keys[0] == f"event:{HEADER_ID}"
    assert only(document.raw).event == document.event


def test_max_documents_is_allowed() -> None:
    """Exactly MAX_DOCUMENTS documents are all normalized."""
    body = encode([run_doc(id=f"run-{index}") for index in range(MAX_DOCUMENTS)])
    documents = normalize(body)
    assert len(documents) == MAX_DOCUMENTS
    assert as_run(documents[-1]).run_id == f"run-{MAX_DOCUMENTS - 1}"
