"""Domain objects: what one Adobe notification document means, independent of its envelope."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from exporter.payloads.canonical import canonical_json

# The label value that stands for what is invalid or over a cap (error codes, activities, flows).
OTHER = "other"


class ExporterError(Exception):
    """Base class of every error this package raises on purpose."""


class Outcome(enum.StrEnum):
    """How a completed flow run ended."""

    SUCCESS = "success"
    FAILED = "failed"


class ActivityStatus(enum.StrEnum):
    """Status label of one activity of a run."""

    SUCCESS = "success"
    FAILED = "failed"
    OTHER = "other"


class AlertKind(enum.StrEnum):
    """Which Adobe-side alert a document is about (protocol notes §18.9)."""

    DELAY = "delay"
    ERROR_RATE = "error_rate"
    OTHER = "other"


class Source(enum.StrEnum):
    """Where notifications come from (protocol notes §18.13): the `source` label."""

    WEBHOOK = "webhook"
    JOURNAL = "journal"
    FLOW_SERVICE = "flow_service"


class DocumentKind(enum.StrEnum):
    """`kind` label of aep_exporter_notifications_total (validation messages are never counted)."""

    RUN = "run"
    START = "start"
    ALERT = "alert"
    OTHER_SERVICE = "other_service"
    UNKNOWN = "unknown"
    VALIDATION = "validation"


@dataclass(frozen=True, slots=True, order=True)
class FlowKey:
    """A flow is identified by its sandbox and its flow id."""

    sandbox: str
    flow_id: str


@dataclass(frozen=True, slots=True)
class ActivityResult:
    """One activity of a run: a validated label (id, else name) and its status."""

    activity: str
    status: ActivityStatus


@dataclass(frozen=True, slots=True)
class RunError:
    """One error a run reported; `code` is already validated (else "other")."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class FlowRun:
    """A completed flow run (success or failure)."""

    flow: FlowKey
    run_id: str | None
    outcome: Outcome
    # Run-level completion: completedAtUTC, else the run's updatedAt; None means "use receipt time".
    completed_at: float | None
    started_at: float | None
    # Only when both run-level times exist and completion >= start.
    duration_seconds: float | None
    input_records: int | None = None
    output_records: int | None = None
    failed_records: int | None = None
    input_bytes: int | None = None
    output_bytes: int | None = None
    input_files: int | None = None
    output_files: int | None = None
    # Each distinct code once, in first-seen order.
    errors: tuple[RunError, ...] = ()
    activities: tuple[ActivityResult, ...] = ()
    flow_name: str | None = None
    ims_org: str | None = None


@dataclass(frozen=True, slots=True)
class FlowStart:
    """A start notification: the run is now open (in progress)."""

    flow: FlowKey
    run_id: str | None
    started_at: float | None
    flow_name: str | None = None
    ims_org: str | None = None


@dataclass(frozen=True, slots=True)
class FlowAlert:
    """An Adobe-side alert document (delay, error rate): FIRING or INACTIVE."""

    flow: FlowKey
    alert: AlertKind
    firing: bool
    name: str
    # The document's own time: resolvedAt for INACTIVE, else createdAt; None if absent.
    at: float | None
    flow_name: str | None = None
    ims_org: str | None = None


@dataclass(frozen=True, slots=True)
class OtherService:
    """A document of another AEP service (identity, profile, segment, destination, ...)."""

    event_code: str


@dataclass(frozen=True, slots=True)
class ValidationMessage:
    """The asynchronous-validation message `{"validationUrl": ...}` (protocol notes §1.1)."""

    url: str


@dataclass(frozen=True, slots=True)
class Unrecognized:
    """A document we could not understand; it goes to the dead letters with this reason."""

    reason: str


Event = FlowRun | FlowStart | FlowAlert | OtherService | ValidationMessage | Unrecognized
# The events that change a flow's record.
FlowEvent = FlowRun | FlowStart | FlowAlert


_KINDS: dict[type, DocumentKind] = {
    FlowRun: DocumentKind.RUN,
    FlowStart: DocumentKind.START,
    FlowAlert: DocumentKind.ALERT,
    OtherService: DocumentKind.OTHER_SERVICE,
    ValidationMessage: DocumentKind.VALIDATION,
    Unrecognized: DocumentKind.UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class Recipients:
    """Every recipient id a delivery names, wherever it names them (protocol notes §18.11)."""

    ids: frozenset[str] = frozenset()
    # A recipient field held what can never be one of our client ids: a value that is not a
    # string, an overlong one, or more distinct ids than are kept.
    unmatchable: bool = False


NO_RECIPIENTS = Recipients()


@dataclass(frozen=True, slots=True)
class Document:
    """One normalized notification document of a delivery; its kind is its event's type."""

    event: Event
    # De-duplication keys (protocol notes §18.7); a duplicate if any was seen.
    dedup_keys: tuple[str, ...]
    # JSON field names whose present values were invalid and treated as unknown.
    anomalies: tuple[str, ...] = ()
    # recipientclientid / recipient_client_id at the document's envelope level, if any: the only
    # place that satisfies --require-recipient (protocol notes §18.11).
    recipient: str | None = None
    # Every recipient id its delivery named anywhere; a dead letter keeps them for replay.
    recipients: Recipients = NO_RECIPIENTS
    # The document's own event id (eventid / event_id), if any.
    event_id: str | None = None
    # The document's decoded JSON value, or the bytes of a body kept whole; `raw` is its text.
    content: Any = field(default=b"", repr=False, compare=False)
    _raw: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def raw(self) -> bytes:
        """The document's canonical JSON text (dead letters, content keys, check-payload).

        Built on first use: a run or alert document is known by its domain key, so most
        documents never need it.
        """
        if self._raw is None:
            content = self.content
            text = content if isinstance(content, bytes) else canonical_json(content)
            object.__setattr__(self, "_raw", text)
            return text
        return self._raw

    @property
    def kind(self) -> DocumentKind:
        """The `kind` label: derived from the event's type, the one discriminator."""
        return _KINDS[type(self.event)]
