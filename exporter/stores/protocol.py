"""The state store protocol: what the recorder needs of a backend, and nothing more.

Every method runs on the recorder's single writer thread (or in a CLI command). Writes happen
inside `transaction()`, so a delivery's de-duplication keys, its flow-record changes, its dead
letters and a pull source's cursor commit together or not at all. Every backend passes the one
contract suite in tests/stores/test_contract.py.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from exporter.domain import ExporterError, FlowKey, Recipients
from exporter.records import FlowState


class StoreUnavailable(ExporterError):
    """The state store cannot be read or written right now (answer 503; Adobe retries)."""


class StoreCorrupt(ExporterError):
    """The stored data is damaged: serving it could make counters go wrong, so nothing starts."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(
            f"state store {where} is damaged ({problem}): stop the exporter, then restore a "
            'backup taken with "aep-flow-exporter backup" or move the file aside to start empty '
            '(README "Operations", "A damaged state file")'
        )


class StoreConflict(StoreUnavailable):
    """A transaction lost to a concurrent one (deadlock, serialization); retrying may succeed."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A stored document the exporter could not understand."""

    id: int
    received_at: float
    reason: str
    event_id: str | None
    doc_hash: str
    body: bytes
    # The recipient ids its delivery named; None when stored before they were kept.
    recipients: Recipients | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterBounds:
    """How many dead letters, and how many bytes of them, a store keeps (oldest evicted)."""

    max_count: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class FlowChanges:
    """Flow records other writers committed: changed ones, deleted ones; `full`: every flow
    not in `changed` is gone (a complete view, read after a gap)."""

    changed: dict[FlowKey, FlowState]
    deleted: frozenset[FlowKey]
    full: bool


class StateStore(Protocol):
    """Flow records, de-duplication keys, dead letters and pull-source cursors."""

    def open(self) -> None:
        """Connect and migrate to the current schema; StoreUnavailable if that fails (StoreCorrupt
        if the storage is damaged)."""

    def close(self) -> None:
        """Release the connection (idempotent)."""

    def transaction(self) -> AbstractContextManager[None]:
        """One atomic unit of writes; StoreUnavailable if it cannot commit (nothing is kept)."""

    def check_integrity(self) -> None:
        """Verify the stored data is sound before it is served: the storage itself and every flow
        record; StoreCorrupt naming the damage otherwise (a malformed record names its flow)."""

    def check_writable(self, size: int) -> None:
        """Prove a transaction writing `size` bytes commits now, keeping nothing (readiness);
        StoreUnavailable otherwise."""

    # -- de-duplication keys (inside a transaction) ---------------------------------------------

    def claim_keys(self, keys: Sequence[str], seen_at: float) -> bool:
        """Insert the keys if none is stored yet: True when claimed; False (nothing kept) if any
        was already there. Atomic: two writers claiming one key never both succeed."""

    def any_key_seen(self, keys: Iterable[str]) -> bool:
        """Whether any of these keys is stored (a read; claims of this transaction count)."""

    def prune_keys(self, older_than: float) -> int:
        """Forget keys claimed before `older_than` (its own transaction); how many."""

    # -- flow records ----------------------------------------------------------------------------

    def load_flows(self) -> dict[FlowKey, FlowState]:
        """Every committed flow record."""

    def lock_flows(self, keys: Collection[FlowKey]) -> dict[FlowKey, FlowState]:
        """The committed records of these flows (those that exist), locked against other
        writers until the transaction ends. Callers copy a record before changing it."""

    def count_flows(self) -> int:
        """How many flow records are committed (the flow cap counts the shared truth)."""

    def put_flows(self, states: Iterable[FlowState]) -> None:
        """Insert or replace flow records (inside a transaction)."""

    def delete_flows(self, keys: Iterable[FlowKey]) -> None:
        """Remove flow records (inside a transaction)."""

    # -- dead letters -----------------------------------------------------------------------------

    def dead_letter_seen(self, event_id: str | None, doc_hash: str) -> bool:
        """Whether a dead letter with this content hash (or event id) is stored."""

    def add_dead_letter(
        self,
        *,
        received_at: float,
        reason: str,
        event_id: str | None,
        doc_hash: str,
        body: bytes,
        recipients: Recipients,
        bounds: DeadLetterBounds,
    ) -> int:
        """Store a dead letter (inside a transaction), evicting the oldest beyond the bounds;
        how many were evicted."""

    def dead_letters(self, ids: Iterable[int] | None = None) -> list[DeadLetter]:
        """Stored dead letters, oldest first (all, or those with the given ids)."""

    def count_dead_letters(self) -> int:
        """How many dead letters are stored."""

    def delete_dead_letters(self, ids: Iterable[int]) -> int:
        """Remove dead letters by id (inside a transaction); how many were removed."""

    def purge_dead_letters(self, older_than: float | None) -> int:
        """Remove all dead letters, or those received before `older_than` (own transaction)."""

    # -- pull-source cursors ----------------------------------------------------------------------

    def get_cursor(self, source: str) -> str | None:
        """The committed cursor of a pull source (opaque text), or None."""

    def put_cursor(self, source: str, value: str, updated_at: float) -> None:
        """Set a pull source's cursor (inside the transaction of the documents it follows)."""


@runtime_checkable
class SharedStateStore(StateStore, Protocol):
    """A store several replicas write at once (PostgreSQL)."""

    def flow_changes(self) -> FlowChanges:
        """The flow records committed by anyone since the last call (all, the first time)."""
