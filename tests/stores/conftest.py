"""The store backends the contract suite runs against: one fixture parameter per backend."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.stores.postgres import PostgresStore
from exporter.stores.protocol import StateStore
from exporter.stores.sqlite import SQLiteStore
from exporter.stores.sqlite_schema import MIGRATIONS

BUCKET_COUNT = 4
StoreFactory = Callable[[], StateStore]


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Open stores of one backend on one fresh database; each call opens another connection."""
    opened: list[StateStore] = []
    url = ""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").create_database()

    def make() -> StateStore:
        if request.param == "sqlite":
            store: StateStore = SQLiteStore(tmp_path / "state.db", bucket_count=BUCKET_COUNT)
        else:
            store = PostgresStore(url, bucket_count=BUCKET_COUNT)
        store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def store_at_version(path: Path, version: int, letter: bytes | None = None) -> None:
    """A SQLite state file at an earlier schema version, holding one dead letter if given."""
    db = sqlite3.connect(path)
    for step in MIGRATIONS[:version]:
        for statement in step:
            db.execute(statement)
    if letter is not None:
        db.execute(
            "INSERT INTO dead_letters (received_at, reason, event_id, doc_hash, body)"
            " VALUES (1.0, 'unknown document shape', NULL, ?, ?)",
            (hashlib.sha256(letter).hexdigest(), letter),
        )
    db.execute(f"PRAGMA user_version={version}")
    db.commit()
    db.close()
