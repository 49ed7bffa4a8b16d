"""SIGKILL a real exporter between journal pages: every event counted once, resumed in place."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from yarl import URL

from exporter.adobe.fake import Answer, FakeAdobe
from exporter.adobe.fake_thread import FakeAdobeThread
from exporter.sources.journal import JournalCursor
from tests.payload_builders import legacy, run_object
from tests.support import ExporterProcess, wait_for

EVENTS = 60
FLOWS = 5
KILLS = 3
PAGE_DELAY = 0.04  # each page answer waits this long, so kills land between pages


def stored_cursor(state: Path) -> JournalCursor | None:
    """The journal cursor committed in the state file (read after the process is gone)."""
    with sqlite3.connect(state) as db:
        row = db.execute("SELECT value FROM cursors WHERE source = 'journal'").fetchone()
    return JournalCursor.parse(row[0] if row else None)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def runs_recorded(metrics: Samples) -> dict[str, float]:
    """Successful runs per flow, the store's truth the service exposes."""
    return {
        dict(labels)["flow_id"]: value
        for (name, labels), value in metrics.items()
        if name == "aep_flow_runs_total" and dict(labels)["status"] == "success"
    }


def asked_after(fake: FakeAdobe, count: int) -> Callable[[], bool]:
    """Whether the journal got more than `count` requests."""
    return lambda: len(fake.requests_to("journal")) > count


def all_recorded(service: ExporterProcess) -> Callable[[], bool]:
    """Whether the service shows every event as a run."""
    return lambda: sum(runs_recorded(service.metrics()).values()) >= EVENTS


def test_sigkill_between_pages_counts_every_event_once_and_resumes_from_the_cursor(
    tmp_path: Path,
) -> None:
    """Killed at seeded random moments while reading a 20-page journal, then restarted: the
    restart asks the stored next URL first, no restarted process reads a page twice, and in
    the end every event is one run."""
    seed = random.randrange(2**32)
    print(f"journal crash seed={seed}")
    rng = random.Random(seed)
    fake = FakeAdobe(page_size=3)
    fake.journal_retry_after = "1"
    state = tmp_path / "state.db"
    with FakeAdobeThread(fake):
        for number in range(EVENTS):
            run = run_object(run_id=f"r{number}", flow_id=f"f{number % FLOWS}")
            fake.add_journal_events(legacy(f"evt-{number}", run))
        fake.script("journal", *[Answer(delay=PAGE_DELAY)] * (EVENTS // 3 * 2))
        settings = {
            **fake.exporter_settings(),
            "AEP_EXPORTER_JOURNAL_URL": fake.journal_url,
            "AEP_EXPORTER_FLOW_REFRESH_INTERVAL": "0",
            "AEP_EXPORTER_RECONCILE_INTERVAL": "0",
        }
        cursor: JournalCursor | None = None
        for round_number in range(KILLS + 1):
            asked_before = len(fake.requests_to("journal"))
            service = ExporterProcess(state, settings=settings).start()
            try:
                wait_for(asked_after(fake, asked_before), "the first journal request", 10)
                first = fake.requests_to("journal")[asked_before]
                # The stored next URL exactly, or the oldest events when none was committed.
                expected = URL(cursor.next) if cursor is not None else URL(fake.journal_url)
                assert (first.path, dict(first.query)) == (expected.path, dict(expected.query)), (
                    seed,
                    round_number,
                )
                if round_number < KILLS:
                    time.sleep(rng.uniform(0.05, 0.5))
                    service.kill()
                    cursor = stored_cursor(state)
                    continue
                wait_for(all_recorded(service), "every event", 20)
                metrics = service.metrics()
            finally:
                service.stop()
    assert runs_recorded(metrics) == {f"f{n}": EVENTS / FLOWS for n in range(FLOWS)}
    duplicate = ("source", "journal"), ("kind", "run"), ("outcome", "duplicate")
    assert metrics[("aep_exporter_notifications_total", tuple(sorted(duplicate)))] == 0, seed
