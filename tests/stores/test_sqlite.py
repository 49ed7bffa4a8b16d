"""SQLite specifics beyond the contract: schema migrations and refusing a newer schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from exporter.domain import Recipients
from exporter.stores.protocol import StoreUnavailable
from exporter.stores.sqlite import SCHEMA_VERSION, SQLiteStore
from tests.stores.conftest import store_at_version


def test_migrations_run_from_every_earlier_version(tmp_path: Path) -> None:
    """Every earlier schema (an empty file is version 0) migrates to the current one."""
    for version in range(SCHEMA_VERSION):
        path = tmp_path / f"v{version}.db"
        store_at_version(path, version)
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


def test_a_dead_letter_from_before_recipients_were_kept_has_none(tmp_path: Path) -> None:
    """Letters stored at schema 2 migrate with no recipient data (None), their body intact."""
    path = tmp_path / "v2.db"
    store_at_version(path, 2, letter=b'{"mystery":1}')
    store = SQLiteStore(path, bucket_count=1)
    store.open()
    [letter] = store.dead_letters()
    assert (letter.body, letter.recipients) == (b'{"mystery":1}', None)
    store.close()


@pytest.mark.parametrize("stored", ["not json", '{"ids": "a"}', '{"ids": [1]}', "[]"])
def test_unreadable_stored_recipients_are_unmatchable(tmp_path: Path, stored: str) -> None:
    """A recipients column that cannot be read back never reads as ours."""
    path = tmp_path / "state.db"
    store_at_version(path, SCHEMA_VERSION, letter=b"{}")
    db = sqlite3.connect(path)
    db.execute("UPDATE dead_letters SET recipients = ?", (stored,))
    db.commit()
    db.close()
    store = SQLiteStore(path, bucket_count=1)
    store.open()
    assert [letter.recipients for letter in store.dead_letters()] == [Recipients(unmatchable=True)]
    store.close()
