"""The SQLite state file's schema, as forward migrations (`PRAGMA user_version` counts them)."""

from __future__ import annotations

# Forward migrations: index i brings a store at user_version i to i + 1. Never edit a shipped one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE flows (
            sandbox TEXT NOT NULL,
            flow_id TEXT NOT NULL,
            state TEXT NOT NULL,
            PRIMARY KEY (sandbox, flow_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE dedup_keys (
            key TEXT PRIMARY KEY,
            seen_at REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX dedup_keys_seen_at ON dedup_keys (seen_at)",
        """CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            received_at REAL NOT NULL,
            reason TEXT NOT NULL,
            event_id TEXT,
            doc_hash TEXT NOT NULL UNIQUE,
            body BLOB NOT NULL
        )""",
        "CREATE INDEX dead_letters_event_id ON dead_letters (event_id)",
    ),
    (
        """CREATE TABLE cursors (
            source TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at REAL NOT NULL
        ) WITHOUT ROWID""",
    ),
    # The recipient ids a dead letter's delivery named (JSON); NULL for older letters.
    ("ALTER TABLE dead_letters ADD COLUMN recipients TEXT",),
)
SCHEMA_VERSION = len(MIGRATIONS)
