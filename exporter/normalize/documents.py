"""Split a delivery body into its documents, classify each by shape, and give it its identity."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from exporter import identity
from exporter.domain import NO_RECIPIENTS, Document, OtherService, Recipients, ValidationMessage
from exporter.normalize.recipients import FIELDS as RECIPIENT_FIELDS
from exporter.normalize.recipients import envelope_recipient
from exporter.normalize.runs import (
    SOURCE_CODES,
    Classified,
    alert_document,
    run_document,
    unknown,
)
from exporter.normalize.values import (
    FUTURE_SLACK,
    ID_LIMIT,
    URL_LIMIT,
    clean_text,
    event_code,
    identifier,
)
from exporter.payloads import shapes
from exporter.payloads.canonical import canonical_json
from exporter.payloads.decode import decode_body

# Adobe batches hold up to 20 events (100 in the legacy FAQ, protocol notes §1.4). A body splitting
# into more is not a delivery we understand, and classifying hundreds of thousands of tiny
# documents would stall the event loop past Adobe's 10 s timeout: it becomes one unknown document.
MAX_DOCUMENTS = 1000

# Event codes of other AEP services (protocol notes §4.1, §4.3): acknowledged, never a source flow.
_OTHER_SERVICE_PREFIXES = ("identity_", "profile_", "segment_", "destination_")

_OTHER_SERVICE_CODES = frozenset({"platform_event"})


def normalize_body(
    body: bytes,
    *,
    received_at: float,
    header_event_id: str | None = None,
    max_depth: int = 64,
    recipients: Recipients = NO_RECIPIENTS,
) -> list[Document]:
    """Split a delivery body into documents and normalize each one.

    Raises only PayloadError (body not UTF-8 JSON, or nested too deep); every document that
    cannot be understood becomes a DocumentKind.UNKNOWN document. `received_at` is part of the
    only the limit for times: one more than FUTURE_SLACK seconds after receipt is invalid (it
    would pin the "last run" gauges for years). A run without a completion time carries
    `completed_at=None` and the store applies the receipt time. `recipients` (every id the
    delivery names, protocol notes §18.11) is attached to each document for its dead letter.
    """
    latest = received_at + FUTURE_SLACK
    value = decode_body(body, max_depth=max_depth)
    parts = list(islice(_split(value), MAX_DOCUMENTS + 1))
    if len(parts) > MAX_DOCUMENTS:
        parts = [_Part(value, value, too_many=True)]
    header_id = identifier(header_event_id, ID_LIMIT) if len(parts) == 1 else None
    return [_document(part, header_id, latest, recipients) for part in parts]


@dataclass(frozen=True, slots=True)
class _Part:
    """One document of a body, before classification."""

    obj: Any
    # The JSON value whose canonical form is Document.raw: re-normalizing it gives this document.
    raw: Any
    is_message: bool = False
    # The messages envelope's recipient fields: a message's envelope-level recipient.
    inherited: Mapping[str, Any] = field(default_factory=dict)
    # The whole body, standing for a batch of more than MAX_DOCUMENTS documents.
    too_many: bool = False


_END = object()


def _split(value: Any) -> Iterator[_Part]:
    """Yield the documents of a decoded body: arrays are batches, `messages` hold one each."""
    # An explicit stack: nested arrays never make this recurse (protocol notes §1.4: a top-level
    # array may be an I/O batch or the AEP failure form, so every element is classified by shape).
    pending: list[Iterator[Any]] = [iter((value,))]
    while pending:
        item = next(pending[-1], _END)
        if item is _END:
            pending.pop()
        elif isinstance(item, list):
            pending.append(iter(item))
        elif isinstance(item, dict) and (messages := shapes.messages(item)) is not None:
            inherited = {name: item[name] for name in RECIPIENT_FIELDS if name in item}
            for message in messages:
                yield _Part(message, {**inherited, "messages": [message]}, True, inherited)
        else:
            yield _Part(item, item)


def _document(
    part: _Part, header_id: str | None, latest: float, recipients: Recipients
) -> Document:
    """Classify one document and attach its identity: event ids, recipient, de-dup keys, raw."""
    obj = part.obj if isinstance(part.obj, dict) else {}
    if part.too_many:
        classified = unknown(f"more than {MAX_DOCUMENTS} documents in one body")
    elif part.is_message:
        classified = _classify_message(part.obj, latest)
    else:
        classified = _classify(part.obj, latest)
    own_ids = _event_ids(obj)
    keys = [identity.event_key(event_id) for event_id in own_ids]
    if header_id is not None:
        keys.append(identity.event_key(header_id))
    # The canonical text is built here only for a content key; otherwise on first use.
    content: Any = part.raw
    if classified.domain_key:
        keys.append(classified.domain_key)
    else:
        content = canonical_json(part.raw)
        keys.append(identity.content_key(content))
    # Only the envelope I/O Events adds counts: a message's or a payload's own recipient field
    # is the provider's text (protocol notes §18.11).
    envelope = part.inherited if part.is_message else obj
    return Document(
        event=classified.event,
        dedup_keys=tuple(dict.fromkeys(keys)),
        anomalies=tuple(classified.anomalies),
        recipient=envelope_recipient(envelope),
        recipients=recipients,
        event_id=own_ids[0] if own_ids else None,
        content=content,
    )


def _classify(obj: Any, latest: float) -> Classified:
    """Classify a document that is not a message, by its shape (protocol notes §4.6)."""
    if not isinstance(obj, dict):
        return unknown("document is not an object")
    if "validationUrl" in obj:
        url = shapes.validation_url(obj)
        if url is None:
            return unknown("validationUrl is not a string")
        return Classified(ValidationMessage(clean_text(url, URL_LIMIT) or ""), [])
    if "messages" in obj:
        return unknown("messages is not a list")
    if "specversion" in obj:
        data = shapes.cloud_event_data(obj)
        if data is None:
            return unknown("CloudEvent without data object")
        ce_type = obj.get("type")
        code = _header_code(data) or event_code(ce_type if isinstance(ce_type, str) else None)
        return _classify_payload(data, code, latest)
    legacy = shapes.legacy_event(obj)
    if legacy is not None:
        return _classify_payload(legacy, _header_code(legacy), latest)
    return _classify_payload(obj, _header_code(obj), latest)


def _classify_message(obj: Any, latest: float) -> Classified:
    """Classify one message of the messages form: kind from its meta `type`, run = `value`."""
    if not isinstance(obj, dict):
        return unknown("message is not an object")
    value = obj.get("value")
    if not isinstance(value, dict):
        return unknown("message without value object")
    code = event_code(shapes.meta_type(obj)) or _header_code(value)
    return _classify_payload(value, code, latest)


def _classify_payload(payload: dict[str, Any], code: str | None, latest: float) -> Classified:
    """Classify the inner document (run, start, alert, other service) of any envelope."""
    if code is not None and _is_other_service(code):
        return Classified(OtherService(code), [])
    status = shapes.alert_status(payload)
    if status is not None:
        return alert_document(payload, status, latest)
    if "flowId" in payload or "metrics" in payload or (code or "").lower() in SOURCE_CODES:
        return run_document(payload, code, latest)
    return unknown("unknown document shape")


def _is_other_service(code: str) -> bool:
    lowered = code.lower()
    return lowered.startswith(_OTHER_SERVICE_PREFIXES) or lowered in _OTHER_SERVICE_CODES


def _header_code(payload: dict[str, Any]) -> str | None:
    """`header._adobeio.eventCode`, cleaned: the event code of run and alert documents."""
    return event_code(shapes.header_event_code(payload))


def _event_ids(obj: dict[str, Any]) -> list[str]:
    """The document's own I/O event ids: `eventid` and the deprecated `event_id` (§1.6)."""
    ids = (identifier(obj.get("eventid"), ID_LIMIT), identifier(obj.get("event_id"), ID_LIMIT))
    return list(dict.fromkeys(event_id for event_id in ids if event_id is not None))
