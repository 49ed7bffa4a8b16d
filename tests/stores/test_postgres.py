"""What only the shared PostgreSQL store does: writers at once, changes, migrations, faults."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from exporter.domain import FlowKey
from exporter.records import FlowState
from exporter.stores.postgres import PostgresStore
from exporter.stores.postgres_schema import SCHEMA_VERSION, AdvisoryLeaderLock
from exporter.stores.protocol import StoreUnavailable
from exporter.stores.urls import redact_url
from tests.postgres import PASSWORD, PostgresCluster
from tests.stores.conftest import BUCKET_COUNT
from tests.support import wait_for

FLOW = FlowKey("prod", "flow-a")


@pytest.fixture
def url(postgres: PostgresCluster) -> str:
    """A fresh database on the session's cluster."""
    return postgres.create_database()


def opened(url: str) -> PostgresStore:
    """A store on its own connection, migrated."""
    store = PostgresStore(url, bucket_count=BUCKET_COUNT)
    store.open()
    return store


def increment(store: PostgresStore, key: FlowKey, times: int) -> None:
    """Count `times` successes, one transaction each, under the row lock."""
    for _ in range(times):
        with store.transaction():
            current = store.lock_flows([key]).get(key)
            state = FlowState.new(key, 1.0, BUCKET_COUNT) if current is None else current.copy()
            state.runs["success"] += 1
            store.put_flows([state])


def test_concurrent_writers_of_one_flow_lose_no_increment(url: str) -> None:
    """Two connections counting the same (new) flow at once both count every time."""
    stores = [opened(url), opened(url)]
    threads = [threading.Thread(target=increment, args=(s, FLOW, 40)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert stores[0].load_flows()[FLOW].runs["success"] == 80
    assert stores[1].count_flows() == 1
    for store in stores:
        store.close()


def test_a_key_claimed_by_another_replica_is_a_duplicate(url: str) -> None:
    """A key another connection committed cannot be claimed again."""
    first, second = opened(url), opened(url)
    with first.transaction():
        assert first.claim_keys(["event:1"], 1.0)
    with second.transaction():
        assert not second.claim_keys(["event:1", "event:2"], 2.0)
    assert not first.any_key_seen(["event:2"])
    first.close()
    second.close()


def test_flow_changes_carry_other_writers_commits_and_deletions(url: str) -> None:
    """The reader gets everything first, then only what changed since, deletions included."""
    reader, writer = opened(url), opened(url)
    increment(writer, FLOW, 1)
    first = reader.flow_changes()
    assert first.full
    assert set(first.changed) == {FLOW}
    assert reader.flow_changes().changed == {}
    other = FlowKey("dev", "flow-b")
    increment(writer, other, 2)
    with writer.transaction():
        writer.delete_flows([FLOW])
    changes = reader.flow_changes()
    assert not changes.full
    assert changes.changed[other].runs["success"] == 2
    assert changes.deleted == {FLOW}
    reader.close()
    writer.close()


def test_a_commit_open_while_changes_are_read_is_read_next_time(url: str) -> None:
    """A transaction that commits after a read began is not skipped by the watermark."""
    reader, writer = opened(url), opened(url)
    reader.flow_changes()
    with writer.transaction():
        state = FlowState.new(FLOW, 1.0, BUCKET_COUNT)
        writer.put_flows([state])
        assert reader.flow_changes().changed == {}  # not committed yet
    assert set(reader.flow_changes().changed) == {FLOW}
    reader.close()
    writer.close()


def test_replicas_starting_together_migrate_once(url: str) -> None:
    """Stores opened at once on an empty database all succeed on one schema."""
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM exporter_schema").fetchall() == [(SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused(url: str) -> None:
    """A database migrated by a newer exporter is refused, naming both versions, password hidden."""
    opened(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE exporter_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreUnavailable, match="newer than this exporter") as caught:
        opened(url)
    assert f"schema {SCHEMA_VERSION + 1}" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_a_wrong_password_fails_without_showing_it(postgres: PostgresCluster) -> None:
    """Errors name the database with the password masked."""
    bad = postgres.url().replace(PASSWORD, "not-the-password")
    with pytest.raises(StoreUnavailable) as caught:
        opened(bad)
    assert "not-the-password" not in str(caught.value)
    assert ":***@127.0.0.1" in str(caught.value)


def test_the_password_file_and_pg_variables_are_honoured(
    postgres: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL without a password connects with PGPASSFILE (libpq reads it), and PGSSLMODE applies."""
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{postgres.port}:*:aep:{PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    store = opened(postgres.url(password=False))
    store.check_writable(1024)
    store.close()
    monkeypatch.setenv("PGSSLMODE", "require")  # the test cluster has no TLS: refused
    with pytest.raises(StoreUnavailable, match="SSL"):
        opened(postgres.url(password=False))


def test_a_read_only_database_fails_readiness_and_recovers(
    postgres: PostgresCluster, url: str
) -> None:
    """check_writable fails while the database refuses writes and passes once it accepts them."""
    store = opened(url)
    database = url.rsplit("/", 1)[1]
    postgres.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    store.close()  # the setting applies to new sessions
    with pytest.raises(StoreUnavailable, match="read-only"):
        store.check_writable(1024)
    postgres.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = off')
    store.close()
    store.check_writable(1024)
    store.close()


def test_a_killed_session_rolls_back_and_the_store_reconnects(
    postgres: PostgresCluster, url: str
) -> None:
    """A connection terminated mid-transaction keeps nothing of it; the next call reconnects."""
    store = opened(url)
    database = url.rsplit("/", 1)[1]

    def killed_midway() -> None:
        with store.transaction():
            assert store.claim_keys(["event:1"], 1.0)
            postgres.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE application_name = 'aep-flow-exporter' AND datname = '{database}'"
            )
            store.put_flows([FlowState.new(FLOW, 1.0, BUCKET_COUNT)])

    with pytest.raises(StoreUnavailable):
        killed_midway()
    assert not store.any_key_seen(["event:1"])
    assert store.count_flows() == 0
    store.close()


def test_one_replica_holds_the_leader_lock_until_it_goes(url: str) -> None:
    """The advisory lock has one holder; when its session ends another takes it."""
    first, second = AdvisoryLeaderLock(url), AdvisoryLeaderLock(url)
    assert first.try_acquire()
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()  # the server ends the session a moment later, releasing the lock
    wait_for(second.try_acquire, "the second holder to take the lock", timeout=10.0)
    second.release()


def test_urls_are_shown_without_their_password() -> None:
    """The user part and a password query parameter are masked; other parts stay."""
    assert redact_url("postgresql://u:s3cret@db:5432/x?sslmode=require") == (
        "postgresql://u:***@db:5432/x?sslmode=require"
    )
    assert redact_url("postgresql://db/x?password=s3cret&sslmode=verify-full") == (
        "postgresql://db/x?password=***&sslmode=verify-full"
    )
    assert redact_url("postgresql://u@db/x") == "postgresql://u@db/x"
