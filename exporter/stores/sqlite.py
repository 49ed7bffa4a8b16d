"""The SQLite state store: the embedded backend of the StateStore protocol, with migrations.

One process owns the file (the `.lock` beside it), so the committed flow records are kept in
memory too, written through on commit: `lock_flows` is a dictionary look-up, and BEGIN IMMEDIATE
already keeps every other writer out for the length of a transaction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path

from exporter.domain import FlowKey, Recipients
from exporter.records import FlowState
from exporter.stores.protocol import DeadLetter, DeadLetterBounds, StoreCorrupt, StoreUnavailable
from exporter.stores.rows import PROBE_SOURCE, recipients_from_text, recipients_to_text, record_text
from exporter.stores.sqlite_checkpoint import Checkpointer
from exporter.stores.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

# The -wal file holds about a second of commits between checkpoints (up to ~100 MiB while a
# journal catches up); once checkpointed and started over, it is cut back to this size.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
# quick_check reports at most this many problems: the first few name the damage well enough.
MAX_INTEGRITY_PROBLEMS = 3


class SQLiteStore:
    """The state file (WAL mode, synchronous=FULL: a commit is on disk before we answer 2xx)."""

    def __init__(self, path: Path, *, bucket_count: int, busy_timeout: float = 2.0) -> None:
        self.path = path
        self._bucket_count = bucket_count
        self._busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        # Committed records (None until first read), and what the open transaction changes.
        self._flows: dict[FlowKey, FlowState] | None = None
        self._staged: dict[FlowKey, FlowState | None] = {}
        self._checkpointer = Checkpointer(path)

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open (creating if needed) and migrate the store to the current schema."""
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
            # Checkpoints run on the checkpointer's thread, never inside a commit; the log file
            # is cut back to WAL_SIZE_LIMIT whenever it starts over after one.
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._db = db
            self._migrate()
            self._checkpointer.start()
        except (sqlite3.Error, OSError, StoreUnavailable) as exc:
            self.close()
            # A migration's failed commit arrives as StoreUnavailable caused by SQLite's error.
            cause = exc.__cause__ if isinstance(exc, StoreUnavailable) else exc
            if _is_corruption(cause):
                raise StoreCorrupt(str(self.path), str(cause)) from None
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(f"cannot open state store {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._checkpointer.stop()
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        self._flows = None

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection; StoreUnavailable when closed."""
        if self._db is None:
            raise StoreUnavailable("state store is not open")
        return self._db

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"state store {self.path} has schema {version}, newer than this exporter's "
                f"{SCHEMA_VERSION}: upgrade the exporter or restore an older backup"
            )
        for target in range(version, SCHEMA_VERSION):
            with self.transaction():
                for statement in MIGRATIONS[target]:
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={target + 1}")
            log.info("state store migrated", extra={"schema": target + 1, "path": str(self.path)})

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on error; sqlite errors → StoreUnavailable."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot begin a transaction: {exc}") from exc
        self._staged = {}
        try:
            yield
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreUnavailable(f"cannot commit: {exc}") from exc
        except BaseException:
            self._rollback()
            raise
        if self._flows is not None:
            for key, state in self._staged.items():
                if state is None:
                    self._flows.pop(key, None)
                else:
                    self._flows[key] = state
        self._staged = {}

    def _rollback(self) -> None:
        self._staged = {}
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("ROLLBACK")

    def check_integrity(self) -> None:
        """PRAGMA quick_check over every page and index, then every flow record decodes (and is
        kept, so the load that follows reads nothing again); StoreCorrupt otherwise."""
        try:
            rows = self.db.execute(f"PRAGMA quick_check({MAX_INTEGRITY_PROBLEMS})").fetchall()
        except sqlite3.Error as exc:
            if _is_corruption(exc):
                raise StoreCorrupt(str(self.path), str(exc)) from None
            raise StoreUnavailable(f"cannot check state store {self.path}: {exc}") from exc
        problems = [" ".join(str(row[0]).split()) for row in rows]
        if problems != ["ok"]:
            raise StoreCorrupt(str(self.path), "; ".join(problems))
        self._flows = None
        self._committed()

    def check_writable(self, size: int) -> None:
        """Commit a transaction that writes `size` random bytes and deletes them again.

        The row goes in and out within one transaction, yet its pages are written to the WAL at
        commit, so the commit needs as much room as a real batch of that size: a tiny write that
        fits in the space a failed batch left would report ready while real commits still fail.
        Random bytes, because a compressing file system stores zeros in no space at all.
        """
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO cursors (source, value, updated_at)"
                " VALUES (?, randomblob(?), 0)",
                (PROBE_SOURCE, size),
            )
            self.db.execute("DELETE FROM cursors WHERE source = ?", (PROBE_SOURCE,))

    # -- flows ---------------------------------------------------------------------------------

    def _committed(self) -> dict[FlowKey, FlowState]:
        if self._flows is None:
            try:
                self._flows = self._read_flows()
            except sqlite3.Error as exc:
                if _is_corruption(exc):
                    raise StoreCorrupt(str(self.path), str(exc)) from None
                raise StoreUnavailable(f"cannot read flow records: {exc}") from exc
        return self._flows

    def _read_flows(self) -> dict[FlowKey, FlowState]:
        flows: dict[FlowKey, FlowState] = {}
        rows = self.db.execute("SELECT sandbox, flow_id, state FROM flows")
        for sandbox, flow_id, text in rows:
            key = FlowKey(sandbox, flow_id)
            try:
                flows[key] = FlowState.from_json(key, json.loads(text), self._bucket_count)
            except (ValueError, TypeError) as exc:  # bad JSON, a bad field, or not even text
                problem = f"flow record sandbox={sandbox} flow_id={flow_id}: {exc}"
                raise StoreCorrupt(str(self.path), problem) from None
        return flows

    def load_flows(self) -> dict[FlowKey, FlowState]:
        """Every committed flow record."""
        return dict(self._committed())

    def lock_flows(self, keys: Collection[FlowKey]) -> dict[FlowKey, FlowState]:
        """The committed records of these flows (BEGIN IMMEDIATE holds every other writer off)."""
        committed = self._committed()
        return {key: committed[key] for key in keys if key in committed}

    def count_flows(self) -> int:
        """How many flow records are committed."""
        return len(self._committed())

    def put_flows(self, states: Iterable[FlowState]) -> None:
        """Insert or replace flow records (inside a transaction)."""
        states = list(states)
        self.db.executemany(
            "INSERT OR REPLACE INTO flows (sandbox, flow_id, state) VALUES (?, ?, ?)",
            [(s.key.sandbox, s.key.flow_id, record_text(s)) for s in states],
        )
        self._staged.update((state.key, state) for state in states)

    def delete_flows(self, keys: Iterable[FlowKey]) -> None:
        """Remove flow records (inside a transaction)."""
        keys = list(keys)
        self.db.executemany(
            "DELETE FROM flows WHERE sandbox = ? AND flow_id = ?",
            [(k.sandbox, k.flow_id) for k in keys],
        )
        self._staged.update(dict.fromkeys(keys))

    # -- de-duplication keys -------------------------------------------------------------------

    def claim_keys(self, keys: Sequence[str], seen_at: float) -> bool:
        """Insert the keys if none is stored yet; False (nothing kept) if any already was."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return True
        marks = ",".join(["(?, ?)"] * len(wanted))
        params = [value for key in wanted for value in (key, seen_at)]
        inserted = self.db.execute(
            f"INSERT INTO dedup_keys (key, seen_at) VALUES {marks}"  # noqa: S608
            " ON CONFLICT (key) DO NOTHING RETURNING key",
            params,
        ).fetchall()
        if len(inserted) == len(wanted):
            return True
        # A duplicate claims nothing: its other keys stay unseen, as if it never came.
        self.db.executemany("DELETE FROM dedup_keys WHERE key = ?", inserted)
        return False

    def any_key_seen(self, keys: Iterable[str]) -> bool:
        """Whether any of these keys is stored."""
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT 1 FROM dedup_keys WHERE key IN ({marks}) LIMIT 1"  # noqa: S608
            if self.db.execute(query, chunk).fetchone() is not None:
                return True
        return False

    def prune_keys(self, older_than: float) -> int:
        """Forget keys first seen before `older_than`; how many were removed."""
        with self.transaction():
            cursor = self.db.execute("DELETE FROM dedup_keys WHERE seen_at < ?", (older_than,))
        return cursor.rowcount

    def count_keys(self) -> int:
        """How many de-duplication keys are stored."""
        return int(self.db.execute("SELECT count(*) FROM dedup_keys").fetchone()[0])

    # -- dead letters --------------------------------------------------------------------------

    def dead_letter_seen(self, event_id: str | None, doc_hash: str) -> bool:
        """Whether a dead letter with this hash (or event id) is stored."""
        row = self.db.execute(
            "SELECT 1 FROM dead_letters"
            " WHERE doc_hash = ? OR (event_id IS NOT NULL AND event_id = ?)",
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

        Returns how many older dead letters were evicted.
        """
        self.db.execute(
            "INSERT INTO dead_letters (received_at, reason, event_id, doc_hash, body, recipients)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (received_at, reason, event_id, doc_hash, body, recipients_to_text(recipients)),
        )
        evicted = 0
        count, size = self.db.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM dead_letters"
        ).fetchone()
        while count > bounds.max_count or (size > bounds.max_bytes and count > 1):
            oldest_id, oldest_size = self.db.execute(
                "SELECT id, length(body) FROM dead_letters ORDER BY id LIMIT 1"
            ).fetchone()
            self.db.execute("DELETE FROM dead_letters WHERE id = ?", (oldest_id,))
            count, size, evicted = count - 1, size - oldest_size, evicted + 1
        return evicted

    def dead_letters(self, ids: Iterable[int] | None = None) -> list[DeadLetter]:
        """Stored dead letters, oldest first (all, or those with the given ids)."""
        query = (
            "SELECT id, received_at, reason, event_id, doc_hash, body, recipients FROM dead_letters"
        )
        params: list[int] = []
        if ids is not None:
            params = list(ids)
            query += f" WHERE id IN ({','.join('?' * len(params))})" if params else " WHERE 0"
        rows = self.db.execute(query + " ORDER BY id", params)
        return [
            DeadLetter(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), recipients_from_text(r[6]))
            for r in rows
        ]

    def count_dead_letters(self) -> int:
        """How many dead letters are stored."""
        return int(self.db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def delete_dead_letters(self, ids: Iterable[int]) -> int:
        """Remove dead letters by id (inside a transaction); how many were removed."""
        cursor = self.db.executemany("DELETE FROM dead_letters WHERE id = ?", [(i,) for i in ids])
        return cursor.rowcount

    def purge_dead_letters(self, older_than: float | None) -> int:
        """Remove all dead letters, or those received before `older_than`."""
        with self.transaction():
            if older_than is None:
                cursor = self.db.execute("DELETE FROM dead_letters")
            else:
                cursor = self.db.execute(
                    "DELETE FROM dead_letters WHERE received_at < ?", (older_than,)
                )
        return cursor.rowcount

    # -- pull-source cursors --------------------------------------------------------------------

    def get_cursor(self, source: str) -> str | None:
        """The committed cursor of a pull source, or None."""
        row = self.db.execute("SELECT value FROM cursors WHERE source = ?", (source,)).fetchone()
        return None if row is None else str(row[0])

    def put_cursor(self, source: str, value: str, updated_at: float) -> None:
        """Set a pull source's cursor (inside a transaction)."""
        self.db.execute(
            "INSERT INTO cursors (source, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (source) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at",
            (source, value, updated_at),
        )

    # -- backup --------------------------------------------------------------------------------

    def backup(self, target: Path) -> None:
        """A consistent online copy of the whole store (SQLite backup API; safe under WAL)."""
        if target.exists():
            raise StoreUnavailable(f"backup target {target} exists; refusing to overwrite it")
        try:
            copy = sqlite3.connect(target)
            try:
                self.db.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")
            finally:
                copy.close()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"backup to {target} failed: {exc}") from exc


def _is_corruption(exc: BaseException | None) -> bool:
    """Whether SQLite reports damage (a bad page, or no database at all), not a passing fault."""
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
