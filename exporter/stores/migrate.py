"""`migrate-state`: a one-way copy of a SQLite state file into PostgreSQL, counters and all."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.domain import ExporterError, Recipients
from exporter.stores.postgres import PostgresStore
from exporter.stores.protocol import DeadLetterBounds
from exporter.stores.sqlite import SQLiteStore

# Copy every dead letter the file holds: the target's bounds apply from the next one on.
_UNBOUNDED = DeadLetterBounds(max_count=2**62, max_bytes=2**62)


class TargetNotEmpty(ExporterError):
    """The PostgreSQL store already holds state; migrate-state keeps it unless --force."""


@dataclass(frozen=True, slots=True)
class Copied:
    """What one migration copied."""

    flows: int
    keys: int
    dead_letters: int
    cursors: int


def copy_sqlite_to_postgres(
    source: SQLiteStore, target: PostgresStore, *, replace: bool = False
) -> Copied:
    """Copy flows, de-duplication keys, dead letters and cursors in one target transaction."""
    if not replace and not target.is_empty():
        raise TargetNotEmpty(
            f"{target.location} already holds exporter state; refusing to mix two histories "
            "(--force replaces it)"
        )
    flows = source.load_flows()
    keys = source.db.execute("SELECT key, seen_at FROM dedup_keys").fetchall()
    cursors = source.db.execute("SELECT source, value, updated_at FROM cursors").fetchall()
    letters = source.dead_letters()
    with target.transaction():
        if replace:
            target.clear()
        target.put_flows(flows.values())
        target.put_keys(keys)
        for letter in letters:
            target.add_dead_letter(
                received_at=letter.received_at,
                reason=letter.reason,
                event_id=letter.event_id,
                doc_hash=letter.doc_hash,
                body=letter.body,
                # None: kept before recipients were stored; replay then reads the body alone.
                recipients=letter.recipients or Recipients(),
                bounds=_UNBOUNDED,
            )
        for name, value, updated_at in cursors:
            target.put_cursor(name, value, updated_at)
    return Copied(len(flows), len(keys), len(letters), len(cursors))
