"""Normalize a delivery body into domain Documents (PRODUCT.md "Normalization decisions")."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from exporter.domain import (
    ActivityResult,
    ActivityStatus,
    AlertKind,
    Document,
    DocumentKind,
    Event,
    FlowAlert,
    FlowKey,
    FlowRun,
    FlowStart,
    OtherService,
    Outcome,
    RunError,
    Unrecognized,
    ValidationMessage,
)
from exporter.payloads.shapes import (
    AlertDocument,
    CloudEvent,
    Envelope,
    EventNotificationMeta,
    HeaderCarrier,
    LegacyWrapper,
    Message,
    MessagesEnvelope,
    RunObject,
    ValidationRequest,
    canonical_json,
    decode_body,
    parse_shape,
)

OTHER = "other"
UNKNOWN_SANDBOX = "unknown"
# Adobe batches hold up to 20 events (100 in the legacy FAQ, reference §1.4). A body splitting
# into more is not a delivery we understand, and classifying hundreds of thousands of tiny
# documents would stall the event loop past Adobe's 10 s timeout: it becomes one unknown document.
MAX_DOCUMENTS = 1000

# Label values for error codes and activities (PRODUCT.md "Errors", "Activity label").
_LABEL = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Identifiers (flow, run, sandbox, event ids): printable, no whitespace. Never cleaned silently,
# since cleaning could merge two distinct ids.
_IDENTIFIER = re.compile(r"[^\s\x00-\x1f\x7f-\x9f\ud800-\udfff]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_EPOCH_STRING = re.compile(r"-?\d{1,20}(?:\.\d{1,9})?")
_COUNT_STRING = re.compile(r"\d{1,16}")

_NAME_LIMIT = 200
_MESSAGE_LIMIT = 1000
_ID_LIMIT = 256
_FLOW_ID_LIMIT = 128
_URL_LIMIT = 2048
# Below 1e11 a time is seconds, otherwise milliseconds (reference §4.4: both occur).
_MS_THRESHOLD = 1e11
# 9999-12-31T23:59:59Z: beyond it a time is garbage, and datetime could not show it anyway.
_MAX_SECONDS = 253402300799
_MAX_COUNT = 2**53
# Clock skew we tolerate: a time further after receipt than this is invalid.
FUTURE_SLACK = 86400.0

# Field names that may label aep_exporter_anomalies_total; anything else is "other".
ANOMALY_FIELDS = frozenset(
    {
        "inputBytes",
        "outputBytes",
        "inputRecordCount",
        "outputRecordCount",
        "failedRecordCount",
        "inputFileCount",
        "outputFileCount",
        "startedAtUTC",
        "completedAtUTC",
        "updatedAt",
        "createdAt",
        "resolvedAt",
        "id",
        "sandboxName",
        "flowName",
        "imsOrgId",
        "metrics",
        "durationSummary",
        "sizeSummary",
        "recordSummary",
        "fileSummary",
        "statusSummary",
        "activities",
        "errors",
        "failedInfo",
    }
)

# Event codes of other AEP services (reference §4.1, §4.3): acknowledged, never a source flow.
_OTHER_SERVICE_PREFIXES = ("identity_", "profile_", "segment_", "destination_")
_OTHER_SERVICE_CODES = frozenset({"platform_event"})
_STARTED = "started"
_STATE_BY_STATUS: Mapping[str, str] = {
    "success": Outcome.SUCCESS,
    "failed": Outcome.FAILED,
    "failure": Outcome.FAILED,
    "inprogress": _STARTED,
}
# Outcome from the event code when the run has no usable status (PRODUCT.md "Outcome");
# `source_flow_run_info` is absent on purpose: it announces both starts and successes.
# `sources_flow_run_started` is seen only in third-party code (reference §4.3).
_STATE_BY_CODE: Mapping[str, str] = {
    "sources_flow_run_success": Outcome.SUCCESS,
    "sources_flow_run_failed": Outcome.FAILED,
    "sources_flow_run_failure": Outcome.FAILED,
    "source_flow_run_error": Outcome.FAILED,
    "sources_flow_run_started": _STARTED,
}
_SOURCE_CODES = frozenset({*_STATE_BY_CODE, "source_flow_run_info"})
_ACTIVITY_STATUS: Mapping[str, ActivityStatus] = {
    "success": ActivityStatus.SUCCESS,
    "failed": ActivityStatus.FAILED,
    "failure": ActivityStatus.FAILED,
}
_RECIPIENT_FIELDS = ("recipientclientid", "recipient_client_id")


def normalize_body(
    body: bytes,
    *,
    received_at: float,
    header_event_id: str | None = None,
    max_depth: int = 64,
) -> list[Document]:
    """Split a delivery body into documents and normalize each one.

    Raises only PayloadError (body not UTF-8 JSON, or nested too deep); every document that
    cannot be understood becomes a DocumentKind.UNKNOWN document. `received_at` is part of the
    only the limit for times: one more than FUTURE_SLACK seconds after receipt is invalid (it
    would pin the "last run" gauges for years). A run without a completion time carries
    `completed_at=None` and the store applies the receipt time.
    """
    latest = received_at + FUTURE_SLACK
    value = decode_body(body, max_depth=max_depth)
    parts = list(islice(_split(value), MAX_DOCUMENTS + 1))
    if len(parts) > MAX_DOCUMENTS:
        parts = [_Part(value, value, too_many=True)]
    header_id = _identifier(header_event_id, _ID_LIMIT) if len(parts) == 1 else None
    return [_document(part, header_id, latest) for part in parts]


@dataclass(frozen=True, slots=True)
class _Part:
    """One document of a body, before classification."""

    obj: Any
    # The JSON value whose canonical form is Document.raw: re-normalizing it gives this document.
    raw: Any
    is_message: bool = False
    # Envelope fields a message inherits (recipient ids), to find its recipient.
    inherited: Mapping[str, Any] = field(default_factory=dict)
    # The whole body, standing for a batch of more than MAX_DOCUMENTS documents.
    too_many: bool = False


_END = object()


def _split(value: Any) -> Iterator[_Part]:
    """Yield the documents of a decoded body: arrays are batches, `messages` hold one each."""
    # An explicit stack: nested arrays never make this recurse (reference §1.4: a top-level array
    # may be an I/O batch or the AEP failure form, so every element is classified by shape).
    pending: list[Iterator[Any]] = [iter((value,))]
    while pending:
        item = next(pending[-1], _END)
        if item is _END:
            pending.pop()
        elif isinstance(item, list):
            pending.append(iter(item))
        elif (
            isinstance(item, dict)
            and "messages" in item
            and (envelope := parse_shape(MessagesEnvelope, item))
        ):
            inherited = {name: item[name] for name in _RECIPIENT_FIELDS if name in item}
            for message in envelope.messages:
                yield _Part(message, {**inherited, "messages": [message]}, True, inherited)
        else:
            yield _Part(item, item)


@dataclass(slots=True)
class _Classified:
    """What a document is, before the envelope-level keys are added."""

    kind: DocumentKind
    event: Event
    anomalies: list[str]
    domain_key: str | None = None


def _document(part: _Part, header_id: str | None, latest: float) -> Document:
    """Classify one document and attach its identity: event ids, recipient, de-dup keys, raw."""
    raw = canonical_json(part.raw)
    obj = part.obj if isinstance(part.obj, dict) else {}
    if part.too_many:
        classified = _unknown(f"more than {MAX_DOCUMENTS} documents in one body")
    elif part.is_message:
        classified = _classify_message(part.obj, latest)
    else:
        classified = _classify(part.obj, latest)
    own_ids = _event_ids(obj)
    keys = [f"event:{event_id}" for event_id in own_ids]
    if header_id is not None:
        keys.append(f"event:{header_id}")
    if classified.domain_key is not None:
        keys.append(classified.domain_key)
    else:
        keys.append("sha256:" + hashlib.sha256(raw).hexdigest())
    inner = obj.get("event") or obj.get("data") or obj.get("value")
    return Document(
        kind=classified.kind,
        event=classified.event,
        dedup_keys=tuple(dict.fromkeys(keys)),
        anomalies=tuple(classified.anomalies),
        recipient=_recipient(obj, inner if isinstance(inner, dict) else {}, part.inherited),
        event_id=own_ids[0] if own_ids else None,
        raw=raw,
    )


def _unknown(reason: str) -> _Classified:
    return _Classified(DocumentKind.UNKNOWN, Unrecognized(reason), [])


def _classify(obj: Any, latest: float) -> _Classified:
    """Classify a document that is not a message, by its shape (reference §4.6)."""
    if not isinstance(obj, dict):
        return _unknown("document is not an object")
    if "validationUrl" in obj:
        validation = parse_shape(ValidationRequest, obj)
        if validation is None:
            return _unknown("validationUrl is not a string")
        url = _text(validation.validation_url, _URL_LIMIT) or ""
        return _Classified(DocumentKind.VALIDATION, ValidationMessage(url), [])
    if "messages" in obj:
        return _unknown("messages is not a list")
    if "specversion" in obj:
        cloud_event = parse_shape(CloudEvent, obj)
        if cloud_event is None:
            return _unknown("CloudEvent without data object")
        ce_type = cloud_event.type if isinstance(cloud_event.type, str) else None
        code = _header_code(cloud_event.data) or _code(ce_type)
        return _classify_payload(cloud_event.data, code, latest)
    legacy = parse_shape(LegacyWrapper, obj) if "event" in obj else None
    if legacy is not None:
        return _classify_payload(legacy.event, _header_code(legacy.event), latest)
    return _classify_payload(obj, _header_code(obj), latest)


def _classify_message(obj: Any, latest: float) -> _Classified:
    """Classify one message of the messages form: kind from its meta `type`, run = `value`."""
    message = parse_shape(Message, obj)
    if message is None:
        return _unknown("message is not an object")
    if not isinstance(message.value, dict):
        return _unknown("message without value object")
    meta = parse_shape(EventNotificationMeta, message.notification_meta)
    code = (_code(meta.type) if meta else None) or _header_code(message.value)
    return _classify_payload(message.value, code, latest)


def _classify_payload(payload: dict[str, Any], code: str | None, latest: float) -> _Classified:
    """Classify the inner document (run, start, alert, other service) of any envelope."""
    if code is not None and _is_other_service(code):
        return _Classified(DocumentKind.OTHER_SERVICE, OtherService(code), [])
    alert = parse_shape(AlertDocument, payload) if "status" in payload else None
    if alert is not None:
        return _alert(alert, latest)
    if "flowId" in payload or "metrics" in payload or (code or "").lower() in _SOURCE_CODES:
        return _run(parse_shape(RunObject, payload) or RunObject(), code, latest)
    return _unknown("unknown document shape")


def _is_other_service(code: str) -> bool:
    lowered = code.lower()
    return lowered.startswith(_OTHER_SERVICE_PREFIXES) or lowered in _OTHER_SERVICE_CODES


def _run(run: RunObject, code: str | None, latest: float) -> _Classified:
    """Normalize a run object into a FlowRun or a FlowStart."""
    anomalies: list[str] = []
    flow = _flow_key(run.flow_id, run.sandbox_name, anomalies)
    if isinstance(flow, str):
        return _unknown(f"run {flow}")
    metrics = _section({"metrics": run.metrics}, "metrics", anomalies)
    status_summary = _section(metrics, "statusSummary", anomalies)
    status = status_summary.get("status")
    state = _STATE_BY_STATUS.get(status.strip().lower()) if isinstance(status, str) else None
    if state is None and code is not None:
        state = _STATE_BY_CODE.get(code.lower())
    if state is None:
        return _unknown("run without outcome")
    run_id = _identifier(run.run_id, _ID_LIMIT)
    if run_id is None and run.run_id is not None:
        anomalies.append("id")
    flow_name = _named_text(run.flow_name, "flowName", anomalies)
    ims_org = _named_text(run.ims_org_id, "imsOrgId", anomalies)
    durations = _section(metrics, "durationSummary", anomalies)
    started_at = _time(durations.get("startedAtUTC"), "startedAtUTC", anomalies, latest)
    if state == _STARTED:
        start = FlowStart(flow, run_id, started_at, flow_name, ims_org)
        key = f"run:{run_id}:started" if run_id else None
        return _Classified(DocumentKind.START, start, anomalies, key)

    outcome = Outcome(state)
    completed = _time(durations.get("completedAtUTC"), "completedAtUTC", anomalies, latest)
    duration = None
    if started_at is not None and completed is not None:
        if completed >= started_at:
            # Microseconds are the finest resolution any Adobe time carries; rounding drops the
            # float noise of subtracting two epoch values (27.371, not 27.371000051498413).
            duration = round(completed - started_at, 6)
        else:
            # The pair is inconsistent: completion is treated as unknown, like any anomaly.
            anomalies.append("completedAtUTC")
            completed = None
    if completed is None:
        # Only run-level fields: activities' times are nonsense in the docs (reference §4.4).
        completed = _time(run.updated_at, "updatedAt", anomalies, latest)
    sizes = _section(metrics, "sizeSummary", anomalies)
    records = _section(metrics, "recordSummary", anomalies)
    files = _section(metrics, "fileSummary", anomalies)
    activities = _activity_objects(run.activities, anomalies)
    flow_run = FlowRun(
        flow=flow,
        run_id=run_id,
        outcome=outcome,
        completed_at=completed,
        started_at=started_at,
        duration_seconds=duration,
        input_records=_count(records, "inputRecordCount", anomalies),
        output_records=_count(records, "outputRecordCount", anomalies),
        failed_records=_count(records, "failedRecordCount", anomalies),
        input_bytes=_count(sizes, "inputBytes", anomalies),
        output_bytes=_count(sizes, "outputBytes", anomalies),
        input_files=_count(files, "inputFileCount", anomalies),
        output_files=_count(files, "outputFileCount", anomalies),
        errors=_errors(status_summary, records, activities, anomalies),
        activities=tuple(_activity(activity) for activity in activities),
        flow_name=flow_name,
        ims_org=ims_org,
    )
    key = f"run:{run_id}:{outcome.value}" if run_id else None
    return _Classified(DocumentKind.RUN, flow_run, anomalies, key)


def _alert(alert: AlertDocument, latest: float) -> _Classified:
    """Normalize an Adobe alert document (delay, error rate)."""
    anomalies: list[str] = []
    flow = _flow_key(alert.flow_id, alert.sandbox_name, anomalies)
    if isinstance(flow, str):
        return _unknown(f"alert {flow}")
    name = _text(alert.name, _NAME_LIMIT) or ""
    lowered = name.lower()
    if "delay" in lowered:
        kind = AlertKind.DELAY
    elif "error_rate" in lowered:
        kind = AlertKind.ERROR_RATE
    else:
        kind = AlertKind.OTHER
    firing = alert.status == "FIRING"
    # The document's own time orders alert states (PRODUCT.md "Alerts").
    if firing:
        at = _time(alert.created_at, "createdAt", anomalies, latest)
    else:
        at = _time(alert.resolved_at, "resolvedAt", anomalies, latest)
    event = FlowAlert(
        flow=flow,
        alert=kind,
        firing=firing,
        name=name,
        at=at,
        flow_name=_named_text(alert.flow_name, "flowName", anomalies),
        ims_org=_named_text(alert.ims_org_id, "imsOrgId", anomalies),
    )
    moment = "none" if at is None else repr(at)
    key = f"alert:{flow.sandbox}:{flow.flow_id}:{kind.value}:{alert.status}:{moment}"
    return _Classified(DocumentKind.ALERT, event, anomalies, key)


def _flow_key(flow_id: Any, sandbox_name: Any, anomalies: list[str]) -> FlowKey | str:
    """Return the flow key, or why there is none ("without flowId", "with invalid flowId")."""
    if flow_id is None:
        return "without flowId"
    valid_id = _identifier(flow_id, _FLOW_ID_LIMIT)
    if valid_id is None:
        return "with invalid flowId"
    sandbox = _identifier(sandbox_name, _ID_LIMIT)
    if sandbox is None:
        if sandbox_name is not None:
            anomalies.append("sandboxName")
        sandbox = UNKNOWN_SANDBOX
    return FlowKey(sandbox, valid_id)


def _activity_objects(value: Any, anomalies: list[str]) -> list[dict[str, Any]]:
    """Return the activities that are objects; anything else is an anomaly."""
    if value is None:
        return []
    if not isinstance(value, list):
        anomalies.append("activities")
        return []
    activities = [activity for activity in value if isinstance(activity, dict)]
    if len(activities) != len(value):
        anomalies.append("activities")
    return activities


def _activity(activity: dict[str, Any]) -> ActivityResult:
    """Label (`id`, else `name`) and status of one activity."""
    label = activity.get("id")
    if not isinstance(label, str) or not label.strip():
        label = activity.get("name")
    status_summary = activity.get("statusSummary")
    status = status_summary.get("status") if isinstance(status_summary, dict) else None
    result = _ACTIVITY_STATUS.get(status.strip().lower()) if isinstance(status, str) else None
    return ActivityResult(_label(label), result or ActivityStatus.OTHER)


def _errors(
    status_summary: dict[str, Any],
    records: dict[str, Any],
    activities: list[dict[str, Any]],
    anomalies: list[str],
) -> tuple[RunError, ...]:
    """Each distinct error code once, first seen first, from every place Adobe puts them (§4.5)."""
    lists: list[tuple[Any, str | None]] = [
        (status_summary.get("errors"), "errors"),
        (records.get("failedInfo"), "failedInfo"),
    ]
    for activity in activities:
        summary = activity.get("statusSummary")
        summary = summary if isinstance(summary, dict) else {}
        extensions = summary.get("extensions")
        activity_records = activity.get("recordSummary")
        lists.append((summary.get("errors"), None))
        lists.append((extensions.get("errors") if isinstance(extensions, dict) else None, None))
        if isinstance(activity_records, dict):
            lists.append((activity_records.get("failedInfo"), None))
    found: dict[str, RunError] = {}
    for entries, field_name in lists:
        if entries is None:
            continue
        if not isinstance(entries, list):
            # Only run-level structure counts as an anomaly (activities are Adobe's detail).
            if field_name is not None:
                anomalies.append(field_name)
            continue
        for entry in entries:
            error = _error(entry)
            found.setdefault(error.code, error)
    return tuple(found.values())


def _error(entry: Any) -> RunError:
    """One error entry: a validated code (else "other") and its message for logs."""
    if not isinstance(entry, dict):
        return RunError(OTHER, _message(entry))
    code = entry.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)  # some codes are numeric (133, 2200): Adobe quotes them, tolerate both
    return RunError(_label(code), _message(entry.get("message")))


def _label(value: Any) -> str:
    """An error code or activity label, if it matches the label pattern; else "other"."""
    if isinstance(value, str) and _LABEL.fullmatch(value.strip()):
        return value.strip()
    return OTHER


def _message(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    text = _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", value)).strip()
    return text[:_MESSAGE_LIMIT]


def _section(container: dict[str, Any], name: str, anomalies: list[str]) -> dict[str, Any]:
    """A sub-object such as `metrics.sizeSummary`: absent or null is empty, a non-object odd."""
    value = container.get(name)
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    anomalies.append(name)
    return {}


class _Invalid(Exception):
    """A present value that is not valid: it is treated as unknown and counted as an anomaly."""


def _time(value: Any, name: str, anomalies: list[str], latest: float) -> float | None:
    """Epoch seconds of a time field; None if absent, 0, -1 or `{}`, or invalid (an anomaly).

    A time after `latest` (receipt plus FUTURE_SLACK) is invalid too.
    """
    if value is None or (isinstance(value, dict) and not value):
        return None
    try:
        seconds = _seconds(value)
    except _Invalid:
        anomalies.append(name)
        return None
    if seconds is not None and seconds > latest:
        anomalies.append(name)
        return None
    return seconds


def _seconds(value: Any) -> float | None:
    """Epoch seconds of a present time value, None for Adobe's "unknown"; raises _Invalid."""
    if isinstance(value, str):
        text = value.strip()
        if _EPOCH_STRING.fullmatch(text):
            return _seconds(float(text) if "." in text else int(text))
        return _iso_seconds(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid
    if value in (0, -1):
        return None
    # NaN fails both comparisons; ints are compared exactly, never converted while huge.
    if not 0 < value <= _MAX_SECONDS * 1000:
        raise _Invalid
    # Seconds in the seed success example, milliseconds elsewhere (reference §4.4).
    return float(value) if value < _MS_THRESHOLD else value / 1000


def _iso_seconds(text: str) -> float:
    """Epoch seconds of an ISO-8601 time (alert documents use them, reference §4.2 C)."""
    if len(text) > 64:
        raise _Invalid
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
    except (ValueError, OverflowError) as exc:
        raise _Invalid from exc
    if seconds <= 0:
        raise _Invalid
    return seconds


def _count(section: dict[str, Any], name: str, anomalies: list[str]) -> int | None:
    """A count field; None if absent, -1 or `{}` (Adobe's unknown), or invalid (an anomaly)."""
    value = section.get(name)
    if value is None or (isinstance(value, dict) and not value):
        return None
    if isinstance(value, str) and value.strip() == "-1":
        return None
    if isinstance(value, str) and _COUNT_STRING.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value == -1:
            return None
        # NaN and infinities fail the range test; fractions fail the integer test.
        if 0 <= value < _MAX_COUNT and (isinstance(value, int) or value.is_integer()):
            return int(value)
    anomalies.append(name)
    return None


def _identifier(value: Any, limit: int) -> str | None:
    """A flow, run, sandbox or event id: a printable string without whitespace, else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) > limit or not _IDENTIFIER.fullmatch(text):
        return None
    return text


def _text(value: Any, limit: int) -> str | None:
    """Human text for a label (flow name, org, alert name): no control characters, capped."""
    if not isinstance(value, str):
        return None
    text = _SURROGATE.sub("\ufffd", _CONTROL.sub("", value)).strip()[:limit].rstrip()
    return text or None


def _named_text(value: Any, name: str, anomalies: list[str]) -> str | None:
    """`_text` of a field that, when present, must be a string (else an anomaly)."""
    if value is not None and not isinstance(value, str):
        anomalies.append(name)
    return _text(value, _NAME_LIMIT)


def _code(value: Any) -> str | None:
    """An event code as sent, cleaned; None when absent or empty."""
    return _text(value, _NAME_LIMIT)


def _header_code(payload: dict[str, Any]) -> str | None:
    """`header._adobeio.eventCode`, where run and alert documents carry their event code."""
    carrier = parse_shape(HeaderCarrier, payload) if "header" in payload else None
    return _code(carrier.header.adobeio.event_code) if carrier else None


def _event_ids(obj: dict[str, Any]) -> list[str]:
    """The document's own I/O event ids: `eventid` and the deprecated `event_id` (§1.6)."""
    if "eventid" not in obj and "event_id" not in obj:
        return []
    envelope = parse_shape(Envelope, obj) or Envelope()
    ids = (_identifier(envelope.eventid, _ID_LIMIT), _identifier(envelope.event_id, _ID_LIMIT))
    return list(dict.fromkeys(event_id for event_id in ids if event_id is not None))


def _recipient(*sources: Mapping[str, Any]) -> str | None:
    """`recipientclientid`, else `recipient_client_id`, from the first source that has one.

    A present value that is not a string is kept as its JSON text, so that it can never match a
    configured client id and the delivery is refused rather than silently accepted.
    """
    for source in sources:
        for name in _RECIPIENT_FIELDS:
            value = source.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                return canonical_json(value).decode()[:_ID_LIMIT]
            text = _SURROGATE.sub("\ufffd", value.strip())[:_ID_LIMIT]
            if text:
                return text
    return None
