"""Normalize one value of an Adobe document: times, counts, identifiers, labels and text.

Each rule is a normalization decision of protocol notes §18 (times §18.2, counts §18.4, labels
§18.5 and §18.6); a present value that breaks its rule is unknown and named as an anomaly.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from exporter.domain import OTHER

# Label values for error codes and activities (protocol notes §18.5, §18.6).
_LABEL = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# Identifiers (flow, run, sandbox, event ids): printable, no whitespace. Never cleaned silently,
# since cleaning could merge two distinct ids.
_IDENTIFIER = re.compile(r"[^\s\x00-\x1f\x7f-\x9f\ud800-\udfff]+")

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

SURROGATE = re.compile(r"[\ud800-\udfff]")

_EPOCH_STRING = re.compile(r"-?\d{1,20}(?:\.\d{1,9})?")

_COUNT_STRING = re.compile(r"\d{1,16}")

NAME_LIMIT = 200

_MESSAGE_LIMIT = 1000

ID_LIMIT = 256

FLOW_ID_LIMIT = 128

URL_LIMIT = 2048

# Below 1e11 a time is seconds, otherwise milliseconds (protocol notes §4.4: both occur).
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


def _plain(text: str) -> bool:
    """Printable ASCII only: no control character, no surrogate, so nothing to clean (and only
    the space can be whitespace); checked in C, before any pattern runs."""
    return text.isascii() and text.isprintable()


def label(value: Any) -> str:
    """An error code or activity label, if it matches the label pattern; else "other"."""
    if isinstance(value, str) and _LABEL.fullmatch(value.strip()):
        return value.strip()
    return OTHER


def message_text(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    text = SURROGATE.sub("\ufffd", CONTROL.sub(" ", value)).strip()
    return text[:_MESSAGE_LIMIT]


def section(container: dict[str, Any], name: str, anomalies: list[str]) -> dict[str, Any]:
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


def time_field(value: Any, name: str, anomalies: list[str], latest: float) -> float | None:
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
    # Seconds in the seed success example, milliseconds elsewhere (protocol notes §4.4).
    return float(value) if value < _MS_THRESHOLD else value / 1000


def _iso_seconds(text: str) -> float:
    """Epoch seconds of an ISO-8601 time (alert documents use them, protocol notes §4.2 C)."""
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


def count_field(section: dict[str, Any], name: str, anomalies: list[str]) -> int | None:
    """A count field; None if absent, -1 or `{}` (Adobe's unknown), or invalid (an anomaly)."""
    value = section.get(name)
    if type(value) is int and 0 <= value < _MAX_COUNT:  # nearly every count: nothing to check
        return value
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


def identifier(value: Any, limit: int) -> str | None:
    """A flow, run, sandbox or event id: a printable string without whitespace, else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    valid = " " not in text if _plain(text) else _IDENTIFIER.fullmatch(text)
    if not text or len(text) > limit or not valid:
        return None
    return text


def clean_text(value: Any, limit: int) -> str | None:
    """Human text for a label (flow name, org, alert name): no control characters, capped."""
    if not isinstance(value, str):
        return None
    if not _plain(value):
        value = SURROGATE.sub("\ufffd", CONTROL.sub("", value))
    text = value.strip()[:limit].rstrip()
    return text or None


def named_text(value: Any, name: str, anomalies: list[str]) -> str | None:
    """`clean_text` of a field that, when present, must be a string (else an anomaly)."""
    if value is not None and not isinstance(value, str):
        anomalies.append(name)
    return clean_text(value, NAME_LIMIT)


def event_code(value: Any) -> str | None:
    """An event code as sent, cleaned; None when absent or empty."""
    return clean_text(value, NAME_LIMIT)
