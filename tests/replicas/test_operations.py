"""Commands with PostgreSQL: migrate-state, backup's refusal, check-config, dead letters live."""

from __future__ import annotations

import asyncio
import os
import urllib.request
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.normalize import normalize_body
from exporter.recorder import Cursor, Limits, Recorder
from exporter.stores.postgres import PostgresStore
from exporter.stores.sqlite import SQLiteStore
from tests.payload_builders import body, legacy, run_object
from tests.postgres import PASSWORD, PostgresCluster
from tests.support import ExporterProcess


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AEP_EXPORTER_* from the caller's environment; state in a temporary directory."""
    for name in list(os.environ):
        if name.startswith("AEP_EXPORTER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AEP_EXPORTER_STATE_PATH", str(tmp_path / "state.db"))


def fill_sqlite(path: Path) -> None:
    """A state file with two runs of one flow, one dead letter and a cursor."""

    async def fill() -> None:
        recorder = Recorder(SQLiteStore(path, bucket_count=1), Limits())
        await recorder.open()
        for number in range(2):
            run = run_object(run_id=f"run-{number}", flow_id="flow-a")
            docs = normalize_body(body(legacy(f"evt-{number}", run)), received_at=5.0)
            await recorder.record(docs, 5.0, Cursor("journal", f"next-{number}"))
        await recorder.record(normalize_body(body({"mystery": 1}), received_at=6.0), 6.0)
        await recorder.close()

    asyncio.run(fill())


def test_migrate_state_copies_a_state_file_and_refuses_a_non_empty_target(
    postgres: PostgresCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Counters, keys, dead letters and cursors move; a second copy needs --force."""
    source, url = tmp_path / "state.db", postgres.create_database()
    fill_sqlite(source)
    assert main(["migrate-state", "--from", str(source), "--state-url", url]) == 0
    out = capsys.readouterr().out
    assert "copied 1 flows, " in out
    assert "1 dead letters, 1 cursors" in out
    assert PASSWORD not in out
    original = SQLiteStore(source, bucket_count=1)
    original.open()
    target = PostgresStore(url, bucket_count=1)
    target.open()
    [(key, state)] = original.load_flows().items()
    assert target.load_flows()[key].to_json() == state.to_json()
    assert target.count_keys() == original.count_keys() > 0
    assert [d.doc_hash for d in target.dead_letters()] == [
        d.doc_hash for d in original.dead_letters()
    ]
    assert target.get_cursor("journal") == "next-1"
    original.close()
    target.close()
    assert main(["migrate-state", "--from", str(source), "--state-url", url]) == 1
    assert "already holds exporter state" in capsys.readouterr().err
    assert main(["migrate-state", "--from", str(source), "--state-url", url, "--force"]) == 0


def test_backup_with_postgres_points_at_pg_dump(capsys: pytest.CaptureFixture[str]) -> None:
    """backup refuses (exit 2) when the state is in PostgreSQL and names pg_dump."""
    url = f"postgresql://aep:{PASSWORD}@127.0.0.1:1/db"
    assert main(["backup", "/tmp/never-written.db", "--state-url", url]) == 2
    err = capsys.readouterr().err
    assert "pg_dump" in err
    assert PASSWORD not in err


def test_check_config_shows_the_state_url_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """check-config prints the URL with the password masked, and the sync interval."""
    url = f"postgresql://aep:{PASSWORD}@db.example:5432/aep?sslmode=verify-full"
    assert main(["check-config", "--state-url", url]) == 0
    out = capsys.readouterr().out
    assert (
        "AEP_EXPORTER_STATE_URL=postgresql://aep:***@db.example:5432/aep?sslmode=verify-full" in out
    )
    assert "AEP_EXPORTER_REPLICA_SYNC_INTERVAL=1s" in out
    assert PASSWORD not in out
    assert main(["check-config", "--state-url", "mysql://x"]) == 2
    assert "AEP_EXPORTER_STATE_URL: must be a postgresql:// URL" in capsys.readouterr().err


def test_dead_letters_are_handled_beside_a_running_replica(
    postgres: PostgresCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With PostgreSQL, list and purge work while a replica runs (no file lock)."""
    url = postgres.create_database()
    settings = {"AEP_EXPORTER_STATE_URL": url}
    with ExporterProcess(
        tmp_path / "unused.db", "--insecure-accept-unsigned", settings=settings
    ) as service:
        request = urllib.request.Request(service.url + "/webhook", data=body({"mystery": 2}))
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert main(["dead-letters", "list", "--state-url", url]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 1  # the one dead letter
        assert main(["dead-letters", "purge", "--state-url", url]) == 0
        assert "purged 1 dead letters" in capsys.readouterr().out
