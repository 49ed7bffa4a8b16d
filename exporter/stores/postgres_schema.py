"""PostgreSQL connections, the schema and its migrations, and the leader lock (one session each)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, LiteralString

import psycopg
from psycopg.conninfo import conninfo_to_dict

log = logging.getLogger(__name__)

# Advisory lock ids (pg_advisory_lock's one-bigint form), fixed for every version.
MIGRATION_LOCK = 0x4145_5046_0001  # "AEPF" 1
LEADER_LOCK = 0x4145_5046_0002
# Connection defaults libpq would otherwise leave unbounded; the URL's own values win.
CONNECT_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "3",
    "keepalives_count": "3",
    "application_name": "aep-flow-exporter",
}

# Forward migrations: index i brings a store at version i to i + 1. Never edit a shipped one.
MIGRATIONS: tuple[tuple[LiteralString, ...], ...] = (
    (
        """CREATE TABLE exporter_flows (
            sandbox text NOT NULL,
            flow_id text NOT NULL,
            state text,
            txid bigint NOT NULL,
            changed_at double precision NOT NULL,
            PRIMARY KEY (sandbox, flow_id)
        )""",
        "CREATE INDEX exporter_flows_txid ON exporter_flows (txid)",
        """CREATE TABLE exporter_dedup_keys (
            key text PRIMARY KEY,
            seen_at double precision NOT NULL
        )""",
        "CREATE INDEX exporter_dedup_keys_seen_at ON exporter_dedup_keys (seen_at)",
        """CREATE TABLE exporter_dead_letters (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            received_at double precision NOT NULL,
            reason text NOT NULL,
            event_id text,
            doc_hash text NOT NULL UNIQUE,
            body bytea NOT NULL,
            recipients text
        )""",
        "CREATE INDEX exporter_dead_letters_event_id ON exporter_dead_letters (event_id)",
        """CREATE TABLE exporter_cursors (
            source text PRIMARY KEY,
            value text NOT NULL,
            updated_at double precision NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
TABLES: tuple[LiteralString, ...] = (
    "exporter_flows",
    "exporter_dedup_keys",
    "exporter_dead_letters",
    "exporter_cursors",
)


def connect(url: str, **overrides: Any) -> psycopg.Connection[Any]:
    """An autocommit connection: the URL, then PG* variables and the password file (libpq)."""
    given = conninfo_to_dict(url)
    params = {k: v for k, v in CONNECT_DEFAULTS.items() if k not in given} | overrides
    return psycopg.connect(url, autocommit=True, **params)


class AdvisoryLeaderLock:
    """Leadership: a session-level advisory lock on a connection of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False

    def try_acquire(self) -> bool:
        """Keep the lock (the session is alive) or try to take it; False on any error."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn, self._held = connect(self.url), False
            if self._held:
                self._conn.execute("SELECT 1")
            else:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,))
                self._held = bool(row.fetchone()[0])  # type: ignore[index]
        except psycopg.Error as exc:
            if self._held:
                log.warning("leader lock connection lost", extra={"error": type(exc).__name__})
            self.release()
            return False
        return self._held

    def release(self) -> None:
        """Close the lock's session, which releases the lock."""
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn, self._held = None, False
