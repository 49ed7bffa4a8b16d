"""SQLite specifics beyond the contract: migrations, a newer schema, damage, the probe's size."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from exporter.domain import FlowKey, Recipients
from exporter.records import FlowState
from exporter.stores.protocol import StoreCorrupt, StoreUnavailable
from exporter.stores.sqlite import WAL_SIZE_LIMIT, SQLiteStore
from exporter.stores.sqlite_schema import SCHEMA_VERSION
from tests.stores.conftest import store_at_version
from tests.support import damage_table, overwrite_flow_row, wait_for

FLOW = FlowKey("prod", "flow-a")


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


def make_populated(path: Path) -> None:
    """A closed store with one flow record and some de-duplication keys."""
    store = SQLiteStore(path, bucket_count=1)
    store.open()
    with store.transaction():
        store.put_flows([FlowState.new(FLOW, 100.0, 1)])
        assert store.claim_keys([f"event:{n}" for n in range(50)], 100.0)
    store.close()


def assert_one_line_with_recovery(error: StoreCorrupt, path: Path) -> None:
    """The message is one line naming the file and how to recover."""
    message = str(error)
    assert "\n" not in message
    assert str(path) in message
    assert "aep-flow-exporter backup" in message
    assert "move the file aside" in message


def test_an_overwritten_page_fails_the_integrity_check(tmp_path: Path) -> None:
    """A page the start-up load never reads is still found damaged by check_integrity."""
    path = tmp_path / "state.db"
    make_populated(path)
    damage_table(path, "dedup_keys")
    store = SQLiteStore(path, bucket_count=1)
    store.open()
    try:
        assert set(store.load_flows()) == {FLOW}  # what a start without the check served
        with pytest.raises(StoreCorrupt) as caught:
            store.check_integrity()
    finally:
        store.close()
    assert_one_line_with_recovery(caught.value, path)


def test_an_overwritten_header_is_damage_not_unavailability(tmp_path: Path) -> None:
    """A file that is no longer a database at all is refused as damaged when it opens."""
    path = tmp_path / "state.db"
    make_populated(path)
    with path.open("r+b") as handle:
        handle.write(b"\xa5" * 100)
    with pytest.raises(StoreCorrupt) as caught:
        SQLiteStore(path, bucket_count=1).open()
    assert_one_line_with_recovery(caught.value, path)


BAD_RECORDS = {
    "not JSON": ('{"first_seen": 1', "Expecting"),
    "not an object": ("[1, 2]", "record is not an object"),
    "a count that is text": (
        json.dumps({"first_seen": 1, "last_received": 2, "runs": {"success": "many"}}),
        "runs.success is not a count",
    ),
    "a negative count": (
        json.dumps({"first_seen": 1, "last_received": 2, "totals": {"input_records": -3}}),
        "totals.input_records is not a count",
    ),
    "a missing time": (json.dumps({"last_received": 2}), "first_seen is not a finite number"),
    "a bad newest run": (
        json.dumps({"first_seen": 1, "last_received": 2, "newest": {"success": True}}),
        "newest has the wrong fields",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_malformed_flow_record_names_its_flow_and_field(tmp_path: Path, case: str) -> None:
    """A flow row whose JSON or a field is wrong fails the integrity check, naming both."""
    text, problem = BAD_RECORDS[case]
    path = tmp_path / "state.db"
    make_populated(path)
    overwrite_flow_row(path, FLOW.sandbox, FLOW.flow_id, text)
    store = SQLiteStore(path, bucket_count=1)
    store.open()
    try:
        with pytest.raises(StoreCorrupt) as caught:
            store.check_integrity()
    finally:
        store.close()
    assert_one_line_with_recovery(caught.value, path)
    assert "sandbox=prod flow_id=flow-a" in str(caught.value)
    assert problem in str(caught.value)


def test_the_readiness_check_writes_its_whole_size(tmp_path: Path) -> None:
    """The probe's pages reach the WAL, as a real batch's would (the row is gone afterwards)."""
    path = tmp_path / "state.db"
    store = SQLiteStore(path, bucket_count=1)
    store.open()
    try:
        wal = path.with_name(path.name + "-wal")
        before = wal.stat().st_size
        store.check_writable(512 * 1024)
        assert wal.stat().st_size - before >= 512 * 1024
        assert store.db.execute("SELECT count(*) FROM cursors").fetchone()[0] == 0
    finally:
        store.close()


def _claim_many(store: SQLiteStore, count: int) -> None:
    with store.transaction():
        for number in range(count):
            assert store.claim_keys([f"event:checkpoint-{number:06d}-{'x' * 64}"], 1.0)


def test_commits_never_checkpoint_and_the_checkpointer_does(tmp_path: Path) -> None:
    """A commit only appends to the WAL (no commit waits to copy pages back into the file); the
    store's own thread copies them back within a few seconds, and close() leaves nothing behind."""
    path = tmp_path / "state.db"
    store = SQLiteStore(path, bucket_count=1)
    store.open()
    try:
        assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert store.db.execute("PRAGMA journal_size_limit").fetchone()[0] == WAL_SIZE_LIMIT
        before = path.stat().st_size
        # Far more than the 1 000 WAL pages at which a commit would checkpoint by default.
        _claim_many(store, 30_000)
        wal = Path(f"{path}-wal")
        assert wal.stat().st_size > 1000 * 4096
        wait_for(lambda: path.stat().st_size > before + 1000 * 4096, "a checkpoint", 10.0)
    finally:
        store.close()
    reopened = sqlite3.connect(path)
    assert reopened.execute("SELECT count(*) FROM dedup_keys").fetchone()[0] == 30_000
    reopened.close()
