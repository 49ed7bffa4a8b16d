"""SQLite specifics beyond the contract: schema migrations and refusing a newer schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from exporter.stores.protocol import StoreUnavailable
from exporter.stores.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore


def test_migrations_run_from_every_earlier_version(tmp_path: Path) -> None:
    """Every earlier schema (an empty file is version 0) migrates to the current one."""
    for version in range(SCHEMA_VERSION):
        path = tmp_path / f"v{version}.db"
        db = sqlite3.connect(path)
        for step in MIGRATIONS[:version]:
            for statement in step:
                db.execute(statement)
        db.execute(f"PRAGMA user_version={version}")
        db.commit()
        db.close()
        store = SQLiteStore(path, bucket_count=1)
        store.open()
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.count_keys() == 0
        store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A store written by a newer exporter is refused with a message, not damaged."""
    path = tmp_path / "future.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreUnavailable, match="newer than this exporter"):
        SQLiteStore(path, bucket_count=1).open()
