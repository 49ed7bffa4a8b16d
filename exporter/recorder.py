"""Records normalized documents exactly once: de-duplication, flow-record changes, dead letters.

Concurrent deliveries share one SQLite transaction (group commit) on a single writer thread; a
delivery's future resolves only after that transaction is on disk. The live flow records are
replaced, never changed in place, so /metrics can read them at any time from the event loop.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from exporter.domain import (
    Document,
    DocumentKind,
    FlowAlert,
    FlowKey,
    FlowRun,
    FlowStart,
    Outcome,
    Unrecognized,
)
from exporter.records import (
    FlowState,
    apply_alert,
    apply_run,
    apply_start,
    drop_stale_open_runs,
)
from exporter.stores.sqlite import SQLiteStore, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
OVERFLOW_FLOW_ID = "other"
MAX_BATCH = 512


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
    max_dead_letters: int = 10_000
    max_dead_letter_bytes: int = 256 * 1024 * 1024


@dataclass(slots=True)
class BatchOutcome:
    """What one batch did, handed from the writer thread back to the event loop."""

    results: list[list[Result]] = field(default_factory=list)
    changed: dict[FlowKey, FlowState] = field(default_factory=dict)
    overflowed: int = 0
    dead_letters_added: int = 0
    dead_letters_evicted: int = 0


@dataclass(slots=True)
class _Pending:
    documents: Sequence[Document]
    received_at: float
    future: asyncio.Future[list[Result]]


def dead_letter_hash(document: Document) -> str:
    """The hash a dead letter is known by (its own sha256: key, else the hash of its raw JSON)."""
    for key in document.dedup_keys:
        if key.startswith("sha256:"):
            return key.removeprefix("sha256:")
    return hashlib.sha256(document.raw).hexdigest()


class Recorder:
    """The write path: owns the store's writer thread and the live flow records."""

    def __init__(self, store: SQLiteStore, limits: Limits) -> None:
        self.store = store
        self.limits = limits
        # The published view, read by /metrics on the event loop.
        self.flows: dict[FlowKey, FlowState] = {}
        # The writer thread's own map, ahead of `flows` by the batches not yet published.
        self._written: dict[FlowKey, FlowState] = {}
        self.dead_letters_stored = 0
        self.on_batch: list[Callable[[BatchOutcome], None]] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run_in_writer(self, func: Callable[[], T]) -> T:
        """Run `func` on the writer thread (every store access goes through it)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, func)

    async def open(self) -> None:
        """Open the store and load every flow record."""

        def load() -> tuple[dict[FlowKey, FlowState], int]:
            self.store.open()
            bucket_count = len(self.limits.duration_buckets) + 1
            return self.store.load_flows(bucket_count), self.store.count_dead_letters()

        self.flows, self.dead_letters_stored = await self.run_in_writer(load)
        self._written = dict(self.flows)

    async def close(self) -> None:
        """Finish pending work, then close the store and its thread."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self.run_in_writer(self.store.close)
        self._executor.shutdown(wait=True)

    async def record(self, documents: Sequence[Document], received_at: float) -> list[Result]:
        """Record a delivery's documents durably; StoreUnavailable if the store cannot write."""
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(documents, received_at, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                outcome = await self.run_in_writer(lambda b=batch: self._commit(b))  # type: ignore[misc]
            except StoreUnavailable as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            except Exception as exc:  # never leave a delivery waiting forever
                log.exception("unexpected error while recording a batch")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(StoreUnavailable(f"unexpected: {exc!r}"))
                continue
            self._publish(outcome)
            for item, results in zip(batch, outcome.results, strict=True):
                if not item.future.done():
                    item.future.set_result(results)

    def _publish(self, outcome: BatchOutcome) -> None:
        if outcome.changed:
            self.flows.update(outcome.changed)
        self.dead_letters_stored += outcome.dead_letters_added - outcome.dead_letters_evicted
        for callback in self.on_batch:
            callback(outcome)

    # -- writer thread -------------------------------------------------------------------------

    def _commit(self, batch: Sequence[_Pending]) -> BatchOutcome:
        outcome = BatchOutcome()
        batch_keys: set[str] = set()
        with self.store.transaction():
            for item in batch:
                outcome.results.append(
                    [
                        self._apply(doc, item.received_at, outcome, batch_keys)
                        for doc in item.documents
                    ]
                )
            if outcome.changed:
                self.store.put_flows(outcome.changed.values())
        self._written.update(outcome.changed)
        return outcome

    def _apply(
        self, doc: Document, received_at: float, outcome: BatchOutcome, batch_keys: set[str]
    ) -> Result:
        if doc.kind is DocumentKind.VALIDATION:
            return Result.VALIDATION
        keys = doc.dedup_keys
        if batch_keys.intersection(keys) or self.store.seen_keys(keys):
            return Result.DUPLICATE
        if isinstance(doc.event, Unrecognized):
            doc_hash = dead_letter_hash(doc)
            if self.store.dead_letter_seen(doc.event_id, doc_hash):
                return Result.DUPLICATE
            outcome.dead_letters_evicted += self.store.add_dead_letter(
                received_at=received_at,
                reason=doc.event.reason,
                event_id=doc.event_id,
                doc_hash=doc_hash,
                body=doc.raw,
                max_count=self.limits.max_dead_letters,
                max_bytes=self.limits.max_dead_letter_bytes,
            )
            outcome.dead_letters_added += 1
            batch_keys.update(keys)
            return Result.DEAD_LETTERED

        event = doc.event
        if isinstance(event, FlowRun | FlowStart | FlowAlert):
            state = self._working_state(event.flow, received_at, outcome)
            if isinstance(event, FlowRun):
                apply_run(state, event, received_at, self.limits.duration_buckets)
            elif isinstance(event, FlowStart):
                done = event.run_id is not None and self._run_completed(event.run_id, batch_keys)
                apply_start(state, event, received_at, already_completed=done)
            else:
                apply_alert(state, event, received_at)
            result = Result.RECORDED
        else:
            result = Result.IGNORED  # another AEP service: acknowledged, remembered, not a flow
        self.store.add_keys(keys, received_at)
        batch_keys.update(keys)
        return result

    def _run_completed(self, run_id: str, batch_keys: set[str]) -> bool:
        # A completion that arrives before its start leaves nothing open (PRODUCT.md "Starts").
        keys = [f"run:{run_id}:{o.value}" for o in Outcome]
        return bool(batch_keys.intersection(keys) or self.store.seen_keys(keys))

    def _working_state(self, key: FlowKey, now: float, outcome: BatchOutcome) -> FlowState:
        state = outcome.changed.get(key)
        if state is not None:
            return state
        live = self._written.get(key)
        if live is None:
            tracked = len(self._written) + sum(1 for k in outcome.changed if k not in self._written)
            if tracked >= self.limits.max_flows:
                outcome.overflowed += 1
                key = FlowKey(key.sandbox, OVERFLOW_FLOW_ID)
                state = outcome.changed.get(key)
                if state is not None:
                    return state
                live = self._written.get(key)
        if live is None:
            state = FlowState.new(key, now, len(self.limits.duration_buckets) + 1)
        else:
            state = live.copy()
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
            live = self._written
            expired = [
                key
                for key, state in live.items()
                if state.last_received < now - flow_ttl and not protected(key)
            ]
            changed: dict[FlowKey, FlowState] = {}
            for key, state in live.items():
                if state.open_runs and key not in expired:
                    copy = state.copy()
                    if drop_stale_open_runs(copy, now - open_run_ttl):
                        changed[key] = copy
            with self.store.transaction():
                self.store.delete_flows(expired)
                self.store.put_flows(changed.values())
            for key in expired:
                del live[key]
            live.update(changed)
            return expired, changed, self.store.prune_keys(now - dedup_window)

        expired, changed, keys_removed = await self.run_in_writer(work)
        for key in expired:
            self.flows.pop(key, None)
        self.flows.update(changed)
        if expired:
            log.info("expired flows count=%d ttl_seconds=%g", len(expired), flow_ttl)
        return len(expired), keys_removed
