"""Records normalized documents exactly once: de-duplication, flow-record changes, dead letters.

Concurrent deliveries share one store transaction (group commit) on a single writer thread; a
delivery's future resolves only after that transaction committed. The published flow records
are replaced, never changed in place, so /metrics reads them at any time from the event loop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from exporter import identity
from exporter.changes import apply_event, drop_stale_open_runs
from exporter.domain import (
    OTHER,
    Document,
    FlowAlert,
    FlowKey,
    FlowRun,
    FlowStart,
    OtherService,
    Unrecognized,
    ValidationMessage,
)
from exporter.records import FlowEnrichment, FlowState
from exporter.stores.protocol import (
    DeadLetterBounds,
    FlowChanges,
    StateStore,
    StoreConflict,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 512
# A batch that lost a deadlock to another replica's is tried again this often before 503.
CONFLICT_ATTEMPTS = 3


class Result(enum.StrEnum):
    """What happened to one document: the `outcome` label of aep_exporter_notifications_total."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"
    IGNORED = "ignored"
    VALIDATION = "validation"  # control message: logged, never counted


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds the recorder enforces."""

    max_flows: int = 10_000
    duration_buckets: tuple[float, ...] = ()
    dead_letters: DeadLetterBounds = field(
        default_factory=lambda: DeadLetterBounds(10_000, 256 * 1024 * 1024)
    )
    # What the readiness probe writes: one delivery of the largest size accepted (max_body_bytes).
    probe_bytes: int = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Cursor:
    """A pull source's position, committed in the same transaction as the documents before it."""

    source: str
    value: str


@dataclass(slots=True)
class BatchOutcome:
    """What one batch did, handed from the writer thread back to the event loop."""

    results: list[list[Result]] = field(default_factory=list)
    changed: dict[FlowKey, FlowState] = field(default_factory=dict)
    created: int = 0  # flows in `changed` that had no record before
    overflowed: int = 0
    dead_letters_added: int = 0
    dead_letters_evicted: int = 0
    # The committed records the batch locked up front (None: no record yet); writer thread only.
    locked: dict[FlowKey, FlowState | None] = field(default_factory=dict)


@dataclass(slots=True)
class _Pending:
    documents: Sequence[Document]
    received_at: float
    cursor: Cursor | None
    future: asyncio.Future[list[Result]]


class Recorder:
    """The write path: owns the store's writer thread, the published records and readiness."""

    def __init__(
        self,
        store: StateStore,
        limits: Limits,
        *,
        on_ready: Callable[[bool], None] = lambda ready: None,
    ) -> None:
        self.store = store
        self.limits = limits
        # The published view, read by /metrics on the event loop.
        self.flows: dict[FlowKey, FlowState] = {}
        self.dead_letters_stored = 0
        self.ready = False
        self._incident = False
        self.on_batch: list[Callable[[BatchOutcome], None]] = []
        self._on_ready = on_ready
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run_in_writer(self, func: Callable[[], T]) -> T:
        """Run `func` on the writer thread (every store access goes through it)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, func)

    async def open(self) -> None:
        """Open the store, check its integrity and load every flow record; ready afterwards.

        A damaged store raises StoreCorrupt and stays closed: nothing is served from it.
        """

        def load() -> tuple[dict[FlowKey, FlowState], int]:
            self.store.open()
            try:
                self.store.check_integrity()
                return self.store.load_flows(), self.store.count_dead_letters()
            except BaseException:
                self.store.close()
                raise

        self.flows, self.dead_letters_stored = await self.run_in_writer(load)
        self.mark_ready(True)

    async def close(self) -> None:
        """Finish pending work, then close the store and its thread."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self.run_in_writer(self.store.close)
        self._executor.shutdown(wait=True)

    def mark_ready(self, ready: bool, reason: str = "") -> None:
        """Track store readiness; one log line per incident, not per request."""
        if ready and self._incident:
            log.warning("state store writable again; ready")
        if not ready and not self._incident:
            log.error(
                "state store unavailable; answering 503 until it recovers", extra={"error": reason}
            )
        self._incident = not ready
        changed, self.ready = ready != self.ready, ready
        if changed:
            self._on_ready(ready)

    async def probe(self) -> None:
        """Prove a transaction as large as a real delivery commits now; mark readiness by it.

        Deliveries are refused while not ready (and a not-ready pod gets none), so no real
        delivery can be the trial: the probe itself writes `probe_bytes`, the most one delivery
        may bring. A tiny write fits in the room a failed commit left behind and would report
        ready every few seconds while real commits still fail (readiness flapping).
        """
        try:
            await self.run_in_writer(lambda: self.store.check_writable(self.limits.probe_bytes))
        except StoreUnavailable as exc:
            self.mark_ready(False, str(exc))
        else:
            self.mark_ready(True)

    async def record(
        self, documents: Sequence[Document], received_at: float, cursor: Cursor | None = None
    ) -> list[Result]:
        """Record documents (and a cursor) durably; StoreUnavailable if the store cannot."""
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(documents, received_at, cursor, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # Not shielded: a caller cancelled meanwhile cancels only its own future, which the
        # flusher then leaves alone; the batch commits all the same.
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                outcome = await self.run_in_writer(lambda b=batch: self._commit_retrying(b))  # type: ignore[misc]
            except StoreUnavailable as exc:
                self.mark_ready(False, str(exc))
                _fail(batch, exc)
                continue
            except Exception as exc:  # never leave a delivery waiting forever
                log.exception("unexpected error while recording a batch")
                _fail(batch, StoreUnavailable(f"unexpected: {exc!r}"))
                continue
            self._publish(outcome)
            for item, results in zip(batch, outcome.results, strict=True):
                if not item.future.done():
                    item.future.set_result(results)

    def publish_changes(self, changes: FlowChanges) -> int:
        """Publish flow records other replicas committed (like a batch: only records that differ
        from the published ones are replaced, so the renderer re-renders just those); how many
        flows changed or went."""
        # Compared as stored: this replica's own commits come back too, and stay as they are.
        changed = {
            key: state
            for key, state in changes.changed.items()
            if key not in self.flows or self.flows[key].to_json() != state.to_json()
        }
        gone = set(changes.deleted)
        if changes.full:
            gone.update(key for key in self.flows if key not in changes.changed)
        gone.intersection_update(self.flows)
        for key in gone:
            del self.flows[key]
        if changed:
            self._publish(BatchOutcome(changed=changed))
        return len(changed) + len(gone)

    def _publish(self, outcome: BatchOutcome) -> None:
        if outcome.changed:
            self.flows.update(outcome.changed)
        self.dead_letters_stored += outcome.dead_letters_added - outcome.dead_letters_evicted
        for callback in self.on_batch:
            callback(outcome)

    async def apply_enrichment(
        self, enrichments: Mapping[FlowKey, FlowEnrichment], now: float
    ) -> int:
        """Store what Flow Service says of flows, in one transaction, and publish the records.

        A flow without a record gets one, its counters at 0 (listed flows are tracked before
        their first run), within the flow cap; a flow whose enrichment is unchanged keeps its
        record object, so the renderer's cache stays valid. Returns the flows left out by the cap.
        """

        def work() -> tuple[BatchOutcome, int]:
            outcome, left_out = BatchOutcome(), 0
            with self.store.transaction():
                current = self.store.lock_flows(list(enrichments))
                room = self.limits.max_flows - self.store.count_flows()
                for key, enrichment in enrichments.items():
                    state = current.get(key)
                    if state is not None and state.enrichment == enrichment:
                        continue
                    if state is not None:
                        state = state.copy()
                    elif room > outcome.created:
                        state = FlowState.new(key, now, len(self.limits.duration_buckets) + 1)
                        # Never heard from: the TTL runs from a notification, not from a listing.
                        state.last_received = 0.0
                        outcome.created += 1
                    else:
                        left_out += 1
                        continue
                    state.enrichment = enrichment
                    outcome.changed[key] = state
                if outcome.changed:
                    self.store.put_flows(outcome.changed.values())
            return outcome, left_out

        outcome, left_out = await self.run_in_writer(work)
        self._publish(outcome)
        return left_out

    # -- writer thread -------------------------------------------------------------------------

    def _commit_retrying(self, batch: Sequence[_Pending]) -> BatchOutcome:
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return self._commit(batch)
            except StoreConflict as exc:
                if attempt == CONFLICT_ATTEMPTS:
                    raise
                log.info(
                    "batch lost to a concurrent one; retrying",
                    extra={"attempt": attempt, "error": str(exc)},
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit(self, batch: Sequence[_Pending]) -> BatchOutcome:
        outcome = BatchOutcome()
        # Keys of this batch's dead letters: never claimed (a replay must find them unseen), but
        # a later document of the same batch carrying one is still a duplicate.
        dead_keys: set[str] = set()
        with self.store.transaction():
            # Lock every flow of the batch at once, in one order: batches of two replicas that
            # touch the same flows take turns instead of deadlocking.
            keys = _flows_of(batch)
            outcome.locked = dict.fromkeys(keys)
            outcome.locked.update(self.store.lock_flows(keys))
            for item in batch:
                outcome.results.append(
                    [
                        self._apply(doc, item.received_at, outcome, dead_keys)
                        for doc in item.documents
                    ]
                )
                if item.cursor is not None:
                    self.store.put_cursor(item.cursor.source, item.cursor.value, item.received_at)
            if outcome.changed:
                self.store.put_flows(outcome.changed.values())
        return outcome

    def _apply(
        self, doc: Document, received_at: float, outcome: BatchOutcome, dead_keys: set[str]
    ) -> Result:
        event, keys = doc.event, doc.dedup_keys
        if isinstance(event, ValidationMessage):
            return Result.VALIDATION
        if dead_keys.intersection(keys):
            return Result.DUPLICATE
        if isinstance(event, Unrecognized):
            return self._dead_letter(doc, event, received_at, outcome, dead_keys)
        if not self.store.claim_keys(keys, received_at):
            return Result.DUPLICATE
        if isinstance(event, OtherService):
            return Result.IGNORED  # another AEP service: acknowledged, remembered, not a flow
        state = self._working_state(event.flow, received_at, outcome)
        # A completion that arrives before its start leaves nothing open (protocol notes §18.10).
        completed = (
            isinstance(event, FlowStart)
            and event.run_id is not None
            and self.store.any_key_seen(identity.completion_keys(event.run_id))
        )
        buckets = self.limits.duration_buckets
        apply_event(state, event, received_at, buckets, run_completed=completed)
        return Result.RECORDED

    def _dead_letter(
        self,
        doc: Document,
        event: Unrecognized,
        received_at: float,
        outcome: BatchOutcome,
        dead_keys: set[str],
    ) -> Result:
        digest = identity.content_digest(doc.dedup_keys, doc.raw)
        if self.store.any_key_seen(doc.dedup_keys) or self.store.dead_letter_seen(
            doc.event_id, digest
        ):
            return Result.DUPLICATE
        outcome.dead_letters_evicted += self.store.add_dead_letter(
            received_at=received_at,
            reason=event.reason,
            event_id=doc.event_id,
            doc_hash=digest,
            body=doc.raw,
            recipients=doc.recipients,
            bounds=self.limits.dead_letters,
        )
        outcome.dead_letters_added += 1
        dead_keys.update(doc.dedup_keys)
        return Result.DEAD_LETTERED

    def _working_state(self, key: FlowKey, now: float, outcome: BatchOutcome) -> FlowState:
        """The record this batch changes for a flow: a copy of the committed one, or a new one
        (folded into flow_id="other" once the flow cap is reached)."""
        state = outcome.changed.get(key)
        if state is not None:
            return state
        if key in outcome.locked:
            current = outcome.locked[key]
        else:
            current = self.store.lock_flows((key,)).get(key)
        tracked = self.store.count_flows() + outcome.created if current is None else 0
        if current is None and tracked >= self.limits.max_flows:
            outcome.overflowed += 1
            key = FlowKey(key.sandbox, OTHER)
            state = outcome.changed.get(key)
            if state is not None:
                return state
            current = outcome.locked.get(key) or self.store.lock_flows((key,)).get(key)
        if current is None:
            state = FlowState.new(key, now, len(self.limits.duration_buckets) + 1)
            outcome.created += 1
        else:
            state = current.copy()
        outcome.changed[key] = state
        return state

    # -- maintenance ---------------------------------------------------------------------------

    async def prune(
        self,
        *,
        now: float,
        flow_ttl: float,
        open_run_ttl: float,
        dedup_window: float,
        protected: Callable[[FlowKey], bool],
    ) -> tuple[int, int]:
        """Expire flows, stale open runs and old de-duplication keys; (flows, keys) removed."""

        def work() -> tuple[list[FlowKey], dict[FlowKey, FlowState], int]:
            with self.store.transaction():
                # Change only what is locked: another replica may be recording the same flows.
                stale, run_cutoff = now - flow_ttl, now - open_run_ttl
                live = self.store.lock_flows(
                    [
                        key
                        for key, state in self.store.load_flows().items()
                        if state.last_received < stale
                        or any(at < run_cutoff for at in state.open_runs.values())
                    ]
                )
                expired = [
                    key
                    for key, state in live.items()
                    if state.last_received < stale and not protected(key)
                ]
                changed: dict[FlowKey, FlowState] = {}
                for key, state in live.items():
                    if state.open_runs and key not in expired:
                        copy = state.copy()
                        if drop_stale_open_runs(copy, run_cutoff):
                            changed[key] = copy
                self.store.delete_flows(expired)
                self.store.put_flows(changed.values())
            return expired, changed, self.store.prune_keys(now - dedup_window)

        expired, changed, keys_removed = await self.run_in_writer(work)
        for key in expired:
            self.flows.pop(key, None)
        self.flows.update(changed)
        if expired:
            log.info("expired flows", extra={"count": len(expired), "ttl_seconds": flow_ttl})
        return len(expired), keys_removed


def _flows_of(batch: Sequence[_Pending]) -> list[FlowKey]:
    """The flows a batch's documents change, sorted."""
    return sorted(
        {
            doc.event.flow
            for item in batch
            for doc in item.documents
            if isinstance(doc.event, FlowRun | FlowStart | FlowAlert)
        }
    )


def _fail(batch: Sequence[_Pending], exc: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)
