"""The PostgreSQL state store: several replicas share one truth (protocol notes §18.15).

One synchronous psycopg connection per store, used only by the recorder's writer thread (or a
CLI command). De-duplication keys are claimed through the primary key; flow records change
under row locks (`SELECT … FOR UPDATE`) in the same transaction. Each flow row carries the id
of the transaction that wrote it last, so `flow_changes` finds what other replicas committed;
a deleted flow stays a row without a state (a tombstone) until the de-duplication window ends.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any, LiteralString

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict

from exporter.domain import FlowKey, Recipients
from exporter.records import FlowState
from exporter.stores.postgres_schema import (
    MIGRATION_LOCK,
    MIGRATIONS,
    SCHEMA_VERSION,
    TABLES,
    AdvisoryLeaderLock,  # noqa: F401 - re-exported
    connect,
)
from exporter.stores.protocol import (
    DeadLetter,
    DeadLetterBounds,
    FlowChanges,
    StoreConflict,
    StoreCorrupt,
    StoreUnavailable,
)
from exporter.stores.rows import PROBE_SOURCE, recipients_from_text, recipients_to_text, record_text
from exporter.stores.urls import redact_url

log = logging.getLogger(__name__)


class PostgresStore:
    """The shared store; reconnects by itself after the database comes back."""

    def __init__(self, url: str, *, bucket_count: int) -> None:
        self.url = url
        self.location = redact_url(url)
        self._bucket_count = bucket_count
        self._conn: psycopg.Connection[Any] | None = None
        self._since: int | None = None  # the flow_changes watermark (a snapshot's xmin)

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Connect and migrate to the current schema (once, under an advisory lock)."""
        conn = self._connection()
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS exporter_schema (version integer NOT NULL)"
                )
                row = conn.execute("SELECT version FROM exporter_schema").fetchone()
                if row is None:
                    conn.execute("INSERT INTO exporter_schema (version) VALUES (0)")
                version = 0 if row is None else int(row[0])
                self._refuse_newer(version)
                for target in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[target]:
                        conn.execute(statement)
                    conn.execute("UPDATE exporter_schema SET version = %s", (target + 1,))
                    log.info(
                        "state store migrated", extra={"schema": target + 1, "url": self.location}
                    )
        except psycopg.Error as exc:
            self.close()
            raise self._unavailable("cannot open state store", exc) from exc
        except StoreUnavailable:
            self.close()
            raise

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"state store {self.location} has schema {version}, newer than this "
                f"exporter's {SCHEMA_VERSION}: upgrade the exporter or restore an older backup"
            )

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = connect(self.url)
            except psycopg.Error as exc:
                raise self._unavailable("cannot connect to state store", exc) from exc
        return self._conn

    def _unavailable(self, what: str, exc: psycopg.Error) -> StoreUnavailable:
        """The error to raise; a broken connection is dropped so the next call reconnects."""
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self.close()
        self._since = None  # a gap: the next flow_changes reads everything again
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        password = conninfo_to_dict(self.url).get("password")
        if password:
            message = message.replace(str(password), "***")
        kind = (
            StoreConflict
            if isinstance(exc, errors.DeadlockDetected | errors.SerializationFailure)
            else StoreUnavailable
        )
        return kind(f"{what} {self.location}: {message}")

    def _execute(self, query: LiteralString, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        try:
            return self._connection().execute(query, params)
        except psycopg.Error as exc:
            raise self._unavailable("state store query failed", exc) from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One database transaction; any database error → StoreUnavailable, nothing kept."""
        conn = self._connection()
        try:
            with conn.transaction():
                yield
        except psycopg.Error as exc:
            raise self._unavailable("cannot commit to state store", exc) from exc

    def check_integrity(self) -> None:
        """Every flow record decodes (PostgreSQL checks its own pages); StoreCorrupt otherwise."""
        self.load_flows()

    def check_writable(self, size: int) -> None:
        """Commit a write of `size` random bytes, deleted in the same transaction (a read-only
        server, a standby or a full disk fail it, as a real batch of that size would)."""
        with self.transaction():
            self._execute(
                "INSERT INTO exporter_cursors (source, value, updated_at)"
                " VALUES (%s, %s, 0) ON CONFLICT (source) DO UPDATE SET value = excluded.value",
                (PROBE_SOURCE, base64.b64encode(os.urandom(size)).decode()),
            )
            self._execute("DELETE FROM exporter_cursors WHERE source = %s", (PROBE_SOURCE,))

    # -- flows ---------------------------------------------------------------------------------

    def _rows_to_flows(self, rows: Iterable[tuple[str, str, str]]) -> dict[FlowKey, FlowState]:
        flows = {}
        for sandbox, flow_id, text in rows:
            key = FlowKey(sandbox, flow_id)
            try:
                flows[key] = FlowState.from_json(key, json.loads(text), self._bucket_count)
            except (ValueError, TypeError) as exc:  # bad JSON, a bad field, or not even text
                problem = f"flow record sandbox={sandbox} flow_id={flow_id}: {exc}"
                raise StoreCorrupt(self.location, problem) from None
        return flows

    def load_flows(self) -> dict[FlowKey, FlowState]:
        """Every committed flow record."""
        rows = self._execute(
            "SELECT sandbox, flow_id, state FROM exporter_flows WHERE state IS NOT NULL"
        ).fetchall()
        return self._rows_to_flows(rows)

    def lock_flows(self, keys: Collection[FlowKey]) -> dict[FlowKey, FlowState]:
        """The committed records, row-locked; a placeholder row locks a flow not stored yet, so
        two replicas creating one flow take turns instead of overwriting each other."""
        if not keys:
            return {}
        ordered = sorted(set(keys))  # one lock order everywhere: no deadlock between batches
        sandboxes, flow_ids = [k.sandbox for k in ordered], [k.flow_id for k in ordered]
        self._execute(
            "INSERT INTO exporter_flows (sandbox, flow_id, state, txid, changed_at)"
            " SELECT s, f, NULL, 0, %s FROM unnest(%s::text[], %s::text[]) AS k(s, f)"
            " ON CONFLICT DO NOTHING",
            (time.time(), sandboxes, flow_ids),
        )
        rows = self._execute(
            "SELECT sandbox, flow_id, state FROM exporter_flows"
            " WHERE (sandbox, flow_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
            " ORDER BY sandbox, flow_id FOR UPDATE",
            (sandboxes, flow_ids),
        ).fetchall()
        return self._rows_to_flows(row for row in rows if row[2] is not None)

    def count_flows(self) -> int:
        """How many flow records are committed, by every replica."""
        row = self._execute(
            "SELECT count(*) FROM exporter_flows WHERE state IS NOT NULL"
        ).fetchone()
        return int(row[0]) if row else 0

    def put_flows(self, states: Iterable[FlowState]) -> None:
        """Insert or replace flow records (inside a transaction)."""
        now = time.time()
        rows = [(s.key.sandbox, s.key.flow_id, record_text(s), now) for s in states]
        if not rows:
            return
        try:
            with self._connection().cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO exporter_flows (sandbox, flow_id, state, txid, changed_at)"
                    " VALUES (%s, %s, %s, pg_current_xact_id()::text::bigint, %s)"
                    " ON CONFLICT (sandbox, flow_id) DO UPDATE SET state = excluded.state,"
                    " txid = excluded.txid, changed_at = excluded.changed_at",
                    rows,
                )
        except psycopg.Error as exc:
            raise self._unavailable("state store query failed", exc) from exc

    def delete_flows(self, keys: Iterable[FlowKey]) -> None:
        """Remove flow records (a tombstone tells the other replicas; inside a transaction)."""
        keys = list(keys)
        if keys:
            self._execute(
                "UPDATE exporter_flows SET state = NULL,"
                " txid = pg_current_xact_id()::text::bigint, changed_at = %s"
                " WHERE (sandbox, flow_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
                (time.time(), [k.sandbox for k in keys], [k.flow_id for k in keys]),
            )

    def flow_changes(self) -> FlowChanges:
        """The flow records committed (by anyone) since the last call; everything the first
        time and after an error. Rows of transactions still open then are read again next time
        (the watermark is the snapshot's xmin), so a late commit is never skipped."""
        xmin_row = self._execute(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        ).fetchone()
        assert xmin_row is not None
        since, self._since = self._since, int(xmin_row[0])
        if since is None:
            return FlowChanges(self.load_flows(), frozenset(), full=True)
        rows = self._execute(
            "SELECT sandbox, flow_id, state FROM exporter_flows WHERE txid >= %s", (since,)
        ).fetchall()
        deleted = frozenset(FlowKey(s, f) for s, f, text in rows if text is None)
        changed = self._rows_to_flows(row for row in rows if row[2] is not None)
        return FlowChanges(changed, deleted, full=False)

    # -- de-duplication keys -------------------------------------------------------------------

    def claim_keys(self, keys: Sequence[str], seen_at: float) -> bool:
        """Insert the keys if none is stored yet (the primary key decides between replicas)."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return True
        inserted = self._execute(
            "INSERT INTO exporter_dedup_keys (key, seen_at) SELECT unnest(%s::text[]), %s"
            " ON CONFLICT (key) DO NOTHING RETURNING key",
            (wanted, seen_at),
        ).fetchall()
        if len(inserted) == len(wanted):
            return True
        # A duplicate claims nothing: its other keys stay unseen, as if it never came.
        self._execute(
            "DELETE FROM exporter_dedup_keys WHERE key = ANY(%s)", ([row[0] for row in inserted],)
        )
        return False

    def any_key_seen(self, keys: Iterable[str]) -> bool:
        """Whether any of these keys is stored."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return False
        row = self._execute(
            "SELECT 1 FROM exporter_dedup_keys WHERE key = ANY(%s) LIMIT 1", (wanted,)
        ).fetchone()
        return row is not None

    def prune_keys(self, older_than: float) -> int:
        """Forget keys first seen before `older_than`, and tombstones as old; how many keys."""
        with self.transaction():
            removed = self._execute(
                "DELETE FROM exporter_dedup_keys WHERE seen_at < %s", (older_than,)
            ).rowcount
            self._execute(
                "DELETE FROM exporter_flows WHERE state IS NULL AND changed_at < %s", (older_than,)
            )
        return removed

    def count_keys(self) -> int:
        """How many de-duplication keys are stored."""
        row = self._execute("SELECT count(*) FROM exporter_dedup_keys").fetchone()
        return int(row[0]) if row else 0

    # -- dead letters --------------------------------------------------------------------------

    def dead_letter_seen(self, event_id: str | None, doc_hash: str) -> bool:
        """Whether a dead letter with this hash (or event id) is stored."""
        row = self._execute(
            "SELECT 1 FROM exporter_dead_letters"
            " WHERE doc_hash = %s OR (event_id IS NOT NULL AND event_id = %s) LIMIT 1",
            (doc_hash, event_id),
        ).fetchone()
        return row is not None

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
        """Store a dead letter (inside a transaction), evicting the oldest beyond the bounds.

        The same document stored at once by another replica is kept once. Returns how many
        older dead letters were evicted.
        """
        self._execute(
            "INSERT INTO exporter_dead_letters"
            " (received_at, reason, event_id, doc_hash, body, recipients)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (doc_hash) DO NOTHING",
            (received_at, reason, event_id, doc_hash, body, recipients_to_text(recipients)),
        )
        evicted = 0
        row = self._execute(
            "SELECT count(*), coalesce(sum(octet_length(body)), 0) FROM exporter_dead_letters"
        ).fetchone()
        assert row is not None
        count, size = int(row[0]), int(row[1])
        while count > bounds.max_count or (size > bounds.max_bytes and count > 1):
            oldest = self._execute(
                "DELETE FROM exporter_dead_letters WHERE id ="
                " (SELECT min(id) FROM exporter_dead_letters) RETURNING octet_length(body)"
            ).fetchone()
            if oldest is None:
                break
            count, size, evicted = count - 1, size - int(oldest[0]), evicted + 1
        return evicted

    def dead_letters(self, ids: Iterable[int] | None = None) -> list[DeadLetter]:
        """Stored dead letters, oldest first (all, or those with the given ids)."""
        cursor = self._execute(
            "SELECT id, received_at, reason, event_id, doc_hash, body, recipients"
            " FROM exporter_dead_letters WHERE %s OR id = ANY(%s) ORDER BY id",
            (ids is None, [] if ids is None else list(ids)),
        )
        return [
            DeadLetter(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), recipients_from_text(r[6]))
            for r in cursor
        ]

    def count_dead_letters(self) -> int:
        """How many dead letters are stored."""
        row = self._execute("SELECT count(*) FROM exporter_dead_letters").fetchone()
        return int(row[0]) if row else 0

    def delete_dead_letters(self, ids: Iterable[int]) -> int:
        """Remove dead letters by id (inside a transaction); how many were removed."""
        return self._execute(
            "DELETE FROM exporter_dead_letters WHERE id = ANY(%s)", (list(ids),)
        ).rowcount

    def purge_dead_letters(self, older_than: float | None) -> int:
        """Remove all dead letters, or those received before `older_than`."""
        with self.transaction():
            if older_than is None:
                return self._execute("DELETE FROM exporter_dead_letters").rowcount
            return self._execute(
                "DELETE FROM exporter_dead_letters WHERE received_at < %s", (older_than,)
            ).rowcount

    # -- pull-source cursors --------------------------------------------------------------------

    def get_cursor(self, source: str) -> str | None:
        """The committed cursor of a pull source, or None."""
        row = self._execute(
            "SELECT value FROM exporter_cursors WHERE source = %s", (source,)
        ).fetchone()
        return None if row is None else str(row[0])

    def put_cursor(self, source: str, value: str, updated_at: float) -> None:
        """Set a pull source's cursor (inside a transaction)."""
        self._execute(
            "INSERT INTO exporter_cursors (source, value, updated_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (source) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at",
            (source, value, updated_at),
        )

    # -- migration from SQLite -----------------------------------------------------------------

    def is_empty(self) -> bool:
        """Whether no table holds a row (a safe target for migrate-state)."""
        for table in TABLES:
            if self._execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:  # noqa: S608
                return False
        return True

    def put_keys(self, rows: Iterable[tuple[str, float]]) -> None:
        """Store de-duplication keys as they are (inside a transaction; migrate-state)."""
        try:
            with (
                self._connection().cursor() as cursor,
                cursor.copy("COPY exporter_dedup_keys (key, seen_at) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise self._unavailable("state store query failed", exc) from exc

    def clear(self) -> None:
        """Remove every row (inside a transaction; migrate-state --force)."""
        self._execute(f"TRUNCATE {', '.join(TABLES)}")
