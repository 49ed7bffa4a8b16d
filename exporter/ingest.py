"""The one ingest pipeline every source hands its documents to: recipients → normalize → record.

A source (the webhook today; the journal and Flow Service pollers next) proves where a body came
from, then calls `Pipeline.ingest_body` with the body and its `Delivery` context. The pipeline
knows nothing of HTTP: it answers with the documents' results or raises `Rejected` with a reason,
and counts what it recorded in the self-metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from exporter import identity
from exporter.changes import lag_seconds
from exporter.domain import (
    NO_RECIPIENTS,
    Document,
    FlowRun,
    Outcome,
    Recipients,
    Source,
    Unrecognized,
    ValidationMessage,
)
from exporter.metrics.self_metrics import SelfMetrics
from exporter.normalize import normalize_body
from exporter.normalize.recipients import read_recipients, union
from exporter.payloads.decode import PayloadError
from exporter.recorder import Cursor, Recorder, Result
from exporter.rejections import Rejected, Rejection
from exporter.stores.protocol import StoreUnavailable
from exporter.verify.recipients import check_named, check_recipients

__all__ = ["Delivery", "Ingested", "Page", "Pipeline", "RecipientRules"]

log = logging.getLogger(__name__)

# A pull source's page is normalized this many bodies at a time, the event loop free in between.
BODIES_BETWEEN_YIELDS = 10


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a source knows about one body it hands over."""

    source: Source
    received_at: float
    # Authenticity was proven (a signature; for pull sources, TLS and the token). An unproven
    # body that is not JSON is refused; a proven one is kept as a dead letter instead, since a
    # 4xx would make Adobe drop it for good (protocol notes §18.12).
    verified: bool
    # `x-adobe-event-id`, a de-duplication key when the body holds exactly one document.
    header_event_id: str | None = None
    # A pull source's position after this body, committed in the same transaction.
    cursor: Cursor | None = None
    # Recipient ids the body arrived with beyond its own text: a dead letter's, at replay.
    recipients: Recipients = NO_RECIPIENTS


@dataclass(frozen=True, slots=True)
class Ingested:
    """The results of one body's documents, in order."""

    results: list[Result]

    def summary(self) -> dict[str, int]:
        """How many documents had each result."""
        return dict(Counter(result.value for result in self.results))


@dataclass(frozen=True, slots=True)
class Page:
    """What a pull source's page did: its recorded documents' results, and the bodies refused."""

    ingested: Ingested
    refused: list[Rejection]


@dataclass(frozen=True, slots=True)
class RecipientRules:
    """Which Adobe I/O registrations' documents are ours (protocol notes §18.11)."""

    client_ids: frozenset[str] = frozenset()
    require: bool = False


class Pipeline:
    """Normalizes, checks recipients, records durably and counts; shared by every source."""

    def __init__(
        self,
        recorder: Recorder,
        metrics: SelfMetrics,
        *,
        recipients: RecipientRules,
        max_json_depth: int,
    ) -> None:
        self._recorder = recorder
        self._metrics = metrics
        self._recipients = recipients
        self._max_json_depth = max_json_depth

    async def ingest_body(self, body: bytes, delivery: Delivery) -> Ingested:
        """Split a body into documents and ingest them; Rejected if it is refused as a whole."""
        return await self.ingest(self.documents(body, delivery), delivery)

    def documents(self, body: bytes, delivery: Delivery) -> list[Document]:
        """The body's documents, once no recipient it names is foreign; Rejected otherwise."""
        # Before parsing: a shape, depth or parse failure must never turn a document meant for
        # another registration into a dead letter (protocol notes §18.11).
        recipients = union(read_recipients(body), delivery.recipients)
        check_named(recipients, client_ids=self._recipients.client_ids)
        header_id = delivery.header_event_id
        try:
            documents = normalize_body(
                body,
                received_at=delivery.received_at,
                header_event_id=header_id,
                max_depth=self._max_json_depth,
                recipients=recipients,
            )
        except PayloadError as exc:
            if not delivery.verified:
                detail = f"body is not usable JSON: {exc.reason}"
                raise Rejected(Rejection.INVALID_JSON, detail) from None
            documents = [_whole_body_dead_letter(body, exc.reason, header_id, recipients)]
        return documents or [_whole_body_dead_letter(body, "empty delivery", header_id, recipients)]

    async def ingest(self, documents: Sequence[Document], delivery: Delivery) -> Ingested:
        """Record normalized documents durably and count them; Rejected if they are refused."""
        self._check_envelopes(documents, delivery)
        return await self._record(documents, delivery)

    async def ingest_bodies(self, bodies: Sequence[bytes], delivery: Delivery) -> Page:
        """Ingest a pull source's page: every body, then its cursor, in ONE transaction.

        A body the recipient rules refuse is counted by reason and left out, not retried: the
        same page would be refused again forever (README "Running without a public endpoint").
        Rejected only when nothing can be recorded (the store), and then nothing is.
        """
        documents: list[Document] = []
        refused: list[Rejection] = []
        for number, body in enumerate(bodies):
            if number and not number % BODIES_BETWEEN_YIELDS:
                # A page is a few milliseconds of parsing: webhook deliveries go in between.
                await asyncio.sleep(0)
            try:
                found = self.documents(body, delivery)
                self._check_envelopes(found, delivery)
            except Rejected as exc:
                if exc.reason is Rejection.INVALID_JSON:
                    raise  # an unproven source's body; pull sources are proven
                self._metrics.rejected.labels(exc.reason.value).inc()
                refused.append(exc.reason)
                continue
            documents.extend(found)
        return Page(await self._record(documents, delivery), refused)

    def _check_envelopes(self, documents: Sequence[Document], delivery: Delivery) -> None:
        # A Flow Service run answers our own token's query: it has no I/O Events envelope, so
        # no recipient to check (protocol notes §12.2).
        if self._recipients.client_ids and delivery.source is not Source.FLOW_SERVICE:
            # A dead letter's envelope may be unreadable: --require-recipient does not refuse it,
            # replay holds it to the rules once it is understood.
            missing = check_recipients(
                [doc for doc in documents if not isinstance(doc.event, Unrecognized)],
                client_ids=self._recipients.client_ids,
                require=self._recipients.require,
            )
            if missing:
                self._metrics.recipient_missing.inc(missing)

    async def _record(self, documents: Sequence[Document], delivery: Delivery) -> Ingested:
        if not self._recorder.ready:
            raise Rejected(Rejection.STORE_UNAVAILABLE, "state store unavailable")
        try:
            results = await self._recorder.record(documents, delivery.received_at, delivery.cursor)
        except StoreUnavailable as exc:
            raise Rejected(Rejection.STORE_UNAVAILABLE, str(exc)) from None
        for doc in documents:
            if isinstance(doc.event, ValidationMessage):
                log.warning(
                    "Adobe asked for asynchronous webhook validation: open the validation URL "
                    "within 5 minutes",
                    extra={"url": doc.event.url},
                )
        self._count(documents, results, delivery)
        return Ingested(results)

    def _count(
        self, documents: Sequence[Document], results: list[Result], delivery: Delivery
    ) -> None:
        """Self-metrics for recorded documents: outcomes, anomalies, lag, last notification."""
        metrics, received_at = self._metrics, delivery.received_at
        source = delivery.source.value
        for doc, result in zip(documents, results, strict=True):
            if result is Result.VALIDATION:
                continue
            metrics.notification(source, doc.kind.value, result.value).inc()
            _log_outcome(doc, result)
            if result is not Result.RECORDED:
                continue
            for name in doc.anomalies:
                metrics.anomalies.labels(name).inc()
            if isinstance(doc.event, FlowRun):
                lag = lag_seconds(doc.event, received_at)
                if lag is not None:
                    metrics.notification_lag.observe(lag)
            metrics.last_notification.set(received_at)


def _whole_body_dead_letter(
    body: bytes, reason: str, header_event_id: str | None, recipients: Recipients
) -> Document:
    """A proven body that is not JSON is still kept, whole, as one dead letter."""
    keys = [identity.content_key(body)]
    if header_event_id:
        keys.append(identity.event_key(header_event_id))
    return Document(
        event=Unrecognized(reason=reason),
        dedup_keys=tuple(keys),
        event_id=header_event_id,
        recipients=recipients,
        content=body,
    )


# A failed run's line carries at most this many errors, each message cut to this length.
MAX_LOGGED_ERRORS = 10
MAX_LOGGED_MESSAGE_CHARS = 500


def _log_outcome(doc: Document, result: Result) -> None:
    """The lines the runbooks send the on-call engineer to: each failed run, each dead letter."""
    event = doc.event
    if result is Result.RECORDED and isinstance(event, FlowRun):
        if event.outcome is Outcome.FAILED:
            errors = event.errors[:MAX_LOGGED_ERRORS]
            run: dict[str, object] = {"sandbox": event.flow.sandbox, "flow_id": event.flow.flow_id}
            run |= {"flow_name": event.flow_name, "run_id": event.run_id}
            run["completed_at"] = event.completed_at
            run["error_codes"] = [error.code for error in errors]
            run["error_messages"] = [e.message[:MAX_LOGGED_MESSAGE_CHARS] for e in errors]
            log.warning("flow run failed", extra=run)
    elif result is Result.DEAD_LETTERED and isinstance(event, Unrecognized):
        letter = {"reason": event.reason, "event_id": doc.event_id, "bytes": len(doc.raw)}
        log.warning("dead letter stored", extra=letter)
