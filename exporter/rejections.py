"""Why a delivery is refused: the one list of reasons (the `reason` label) and its exception."""

from __future__ import annotations

import enum

from exporter.domain import ExporterError


class Rejection(enum.StrEnum):
    """Label values of aep_exporter_requests_rejected_total{reason}, in exposition order."""

    BAD_SIGNATURE = "bad_signature"
    MISSING_SIGNATURE = "missing_signature"
    RECIPIENT_MISMATCH = "recipient_mismatch"
    RECIPIENT_MISSING = "recipient_missing"
    KEY_UNAVAILABLE = "key_unavailable"
    BODY_TOO_LARGE = "body_too_large"
    READ_TIMEOUT = "read_timeout"
    INVALID_JSON = "invalid_json"
    TOO_MANY_IN_FLIGHT = "too_many_in_flight"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    STORE_UNAVAILABLE = "store_unavailable"


class Rejected(ExporterError):
    """A delivery (or a document of it) is refused as a whole; nothing of it was recorded."""

    def __init__(self, reason: Rejection, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
