"""Adobe I/O Events payload shapes: one pydantic model per documented envelope and document.

Shapes (protocol notes §1.2, §4.2, §4.6): the legacy wrapper `{event_id, event}`, the messages form
`{messages: [{_eventNotificationMeta, value}]}`, CloudEvents 1.0 `{specversion, type, data}`, a
bare run object, an alert document `{status: FIRING|INACTIVE, flowId, name}` and the
asynchronous-validation message `{validationUrl}`. The models only decide and extract the shape;
every value inside stays `Any` because Adobe's values are validated one by one in `normalize`.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


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
    """`{"event_id": ..., "event": {run}}`: the seed success example (protocol notes §4.2 A)."""

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
    """CloudEvents 1.0 as I/O Events sends it: the run is `data` (protocol notes §1.2)."""

    specversion: Any
    type: Any = None
    data: dict[str, Any]


class ValidationRequest(Shape):
    """The asynchronous-validation message `{"validationUrl": ...}` (protocol notes §1.1)."""

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
    """An Adobe alert (delay, error rate): the newer alert schema (protocol notes §4.2 C)."""

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
