"""Adobe I/O Events payload shapes, read straight from the decoded JSON objects.

Shapes (protocol notes §1.2, §4.2, §4.6): the legacy wrapper `{event_id, event}`, the messages form
`{messages: [{_eventNotificationMeta, value}]}`, CloudEvents 1.0 `{specversion, type, data}`, a
bare run object, an alert document `{status: FIRING|INACTIVE, flowId, name}` and the
asynchronous-validation message `{validationUrl}`. Each function answers one question about an
object decoded from JSON (so its objects are dicts, its arrays lists, its keys strings) and never
validates a value beyond what the shape needs: Adobe's values are checked one by one in
`normalize`. Reading fields directly, rather than trying a model per shape, is what makes a
document cost one look at each field it has.
"""

from __future__ import annotations

from typing import Any, Literal

AlertStatus = Literal["FIRING", "INACTIVE"]
_ALERT_STATUSES: dict[str, AlertStatus] = {"FIRING": "FIRING", "INACTIVE": "INACTIVE"}


def messages(obj: dict[str, Any]) -> list[Any] | None:
    """`messages` of the messages form (§4.2 B), if it is an array."""
    value = obj.get("messages")
    return value if isinstance(value, list) else None


def validation_url(obj: dict[str, Any]) -> str | None:
    """`validationUrl` of the asynchronous-validation message (protocol notes §1.1), if a string."""
    value = obj.get("validationUrl")
    return value if isinstance(value, str) else None


def cloud_event_data(obj: dict[str, Any]) -> dict[str, Any] | None:
    """`data` of a CloudEvent (protocol notes §1.2), if it is an object; the run is there."""
    value = obj.get("data")
    return value if isinstance(value, dict) else None


def legacy_event(obj: dict[str, Any]) -> dict[str, Any] | None:
    """`event` of the legacy wrapper `{event_id, event}` (§4.2 A), if it is an object."""
    value = obj.get("event")
    return value if isinstance(value, dict) else None


def meta_type(message: dict[str, Any]) -> str | None:
    """`_eventNotificationMeta.type` of one message of the messages form: its event code."""
    meta = message.get("_eventNotificationMeta")
    value = meta.get("type") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else None


def header_event_code(payload: dict[str, Any]) -> str | None:
    """`header._adobeio.eventCode`, where run and alert documents carry their event code."""
    header = payload.get("header")
    adobeio = header.get("_adobeio") if isinstance(header, dict) else None
    value = adobeio.get("eventCode") if isinstance(adobeio, dict) else None
    return value if isinstance(value, str) else None


def alert_status(payload: dict[str, Any]) -> AlertStatus | None:
    """The `status` of an alert document (§4.2 C), FIRING or INACTIVE in any case; else None."""
    value = payload.get("status")
    if not isinstance(value, str):
        return None
    return _ALERT_STATUSES.get(value.strip().upper())
