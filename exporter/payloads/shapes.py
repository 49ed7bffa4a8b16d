"""Adobe I/O Events payloads: decode a delivery body safely and model each documented shape.

Shapes (reference §1.2, §4.2, §4.6): the legacy wrapper `{event_id, event}`, the messages form
`{messages: [{_eventNotificationMeta, value}]}`, CloudEvents 1.0 `{specversion, type, data}`, a
bare run object, an alert document `{status: FIRING|INACTIVE, flowId, name}` and the
asynchronous-validation message `{validationUrl}`. The models only decide and extract the shape;
every value inside stays `Any` because Adobe's values are validated one by one in `normalize`.
"""

from __future__ import annotations

import json
import operator
import re
from itertools import accumulate, count
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from exporter.domain import ExporterError

# A JSON string (escapes included) up to its closing quote, or to the end of an unterminated body.
# The alternatives always succeed on their first path, so matching never backtracks: linear time.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# Opening brackets become 2, closing ones 0, so that `byte - 1` is the step of the nesting depth.
_DEPTH_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_DEPTH_CHUNK = 1 << 16


class PayloadError(ExporterError):
    """The whole delivery body is unusable: not UTF-8 JSON (`invalid_json`) or nested too deep."""

    def __init__(self, reason: Literal["invalid_json", "too_deep"], detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: str = reason
        self.detail = detail


def nesting_exceeds(text: str, max_depth: int) -> bool:
    """Tell whether JSON text nests brackets deeper than max_depth (brackets in strings aside).

    Linear time, no recursion, and it stops at the first chunk that goes too deep. On text that
    is not JSON it sees at least the depth `json.loads` reaches before its first error.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    steps = brackets.encode("ascii").translate(_DEPTH_STEPS)
    depth = 0
    for start in range(0, len(steps), _DEPTH_CHUNK):
        chunk = steps[start : start + _DEPTH_CHUNK]
        # Depth after the i-th bracket of the chunk = depth + (sum of its first i steps) - i.
        deepest = max(map(operator.sub, accumulate(chunk), count(1)))
        if depth + deepest > max_depth:
            return True
        depth += sum(chunk) - len(chunk)
    return False


def decode_body(body: bytes, *, max_depth: int = 64) -> Any:
    """JSON-decode raw bytes (UTF-8, BOM tolerated), refusing nesting deeper than max_depth."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PayloadError("invalid_json", "body is not UTF-8") from exc
    if nesting_exceeds(text, max_depth):
        raise PayloadError("too_deep", f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError as exc:  # only if max_depth exceeds what the interpreter's stack allows
        raise PayloadError("too_deep", "JSON nested deeper than the parser allows") from exc
    except ValueError as exc:  # JSONDecodeError, or an integer beyond Python's digit limit
        raise PayloadError("invalid_json", str(exc)[:200]) from exc


def canonical_json(value: Any) -> bytes:
    """Return the canonical JSON bytes of a decoded value (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate (`"\ud800"` is valid JSON) cannot be UTF-8: keep it escaped instead.
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class Shape(BaseModel):
    """Base of the payload models: unknown fields are kept, values are not coerced."""

    model_config = ConfigDict(extra="allow", frozen=True)


ShapeT = TypeVar("ShapeT", bound=Shape)


def parse_shape(model: type[ShapeT], data: Any) -> ShapeT | None:
    """Return `data` parsed as `model`, or None when it does not have that shape."""
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


class Envelope(Shape):
    """Fields I/O Events adds to each event: event id and recipient, new and deprecated names."""

    eventid: Any = None
    event_id: Any = None
    recipientclientid: Any = None
    recipient_client_id: Any = None


class LegacyWrapper(Envelope):
    """`{"event_id": ..., "event": {run}}`: the seed success example (reference §4.2 A)."""

    event: dict[str, Any]


class MessagesEnvelope(Envelope):
    """`{"messages": [...]}`: the seed failure example, with or without an outer array (§4.2 B)."""

    messages: list[Any]


class EventNotificationMeta(Shape):
    """`_eventNotificationMeta` of a message: `type` is the event code."""

    type: str


class Message(Envelope):
    """One element of `messages`: the run is `value`, the event code its meta `type`."""

    notification_meta: Any = Field(default=None, alias="_eventNotificationMeta")
    value: Any = None


class CloudEvent(Envelope):
    """CloudEvents 1.0 as I/O Events sends it: the run is `data` (reference §1.2)."""

    specversion: Any
    type: Any = None
    data: dict[str, Any]


class ValidationRequest(Shape):
    """The asynchronous-validation control message `{"validationUrl": ...}` (reference §1.1)."""

    validation_url: str = Field(alias="validationUrl")


class AdobeIoHeader(Shape):
    """`header._adobeio` of a run or alert document."""

    event_code: str = Field(alias="eventCode")


class DocumentHeader(Shape):
    """`header` of a run or alert document."""

    adobeio: AdobeIoHeader = Field(alias="_adobeio")


class HeaderCarrier(Shape):
    """Any document whose event code sits in `header._adobeio.eventCode`."""

    header: DocumentHeader


class AlertDocument(Shape):
    """An Adobe alert (delay, error rate): the newer alert schema (reference §4.2 C)."""

    status: Literal["FIRING", "INACTIVE"]
    flow_id: Any = Field(default=None, alias="flowId")
    name: Any = None
    created_at: Any = Field(default=None, alias="createdAt")
    resolved_at: Any = Field(default=None, alias="resolvedAt")
    sandbox_name: Any = Field(default=None, alias="sandboxName")
    flow_name: Any = Field(default=None, alias="flowName")
    ims_org_id: Any = Field(default=None, alias="imsOrgId")

    @field_validator("status", mode="before")
    @classmethod
    def _upper_status(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


class RunObject(Shape):
    """A Flow Service run object, the `event`/`value`/`data` of a run notification (§4.4)."""

    run_id: Any = Field(default=None, alias="id")
    flow_id: Any = Field(default=None, alias="flowId")
    flow_name: Any = Field(default=None, alias="flowName")
    sandbox_name: Any = Field(default=None, alias="sandboxName")
    ims_org_id: Any = Field(default=None, alias="imsOrgId")
    updated_at: Any = Field(default=None, alias="updatedAt")
    metrics: Any = None
    activities: Any = None
