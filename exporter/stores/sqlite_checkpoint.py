"""WAL checkpoints of the SQLite state file on a thread and connection of their own.

By default SQLite checkpoints inside the COMMIT that takes the write-ahead log past 1 000 pages:
that commit copies every page back into the database file and waits for its flush, and every
delivery in the batch (and in the batches queued behind it) waits too — hundreds of milliseconds
on a slow disk while a journal catches up. Here the writer's connection never checkpoints; this
thread copies the log back every CHECKPOINT_INTERVAL seconds (PASSIVE: it never blocks the
writer nor waits for it), so a commit only appends to the log and flushes it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 1.0


class Checkpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on the state file every `interval` seconds."""

    def __init__(self, path: Path, *, interval: float = CHECKPOINT_INTERVAL) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="store-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last checkpoint; the log then holds nothing it needs."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while True:
                stopping = self._stop.wait(self._interval)
                try:
                    if db is None:
                        db = sqlite3.connect(self._path, isolation_level=None)
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    # A full disk or a damaged file: the writer's own commits report it (and
                    # readiness with them); one line per incident here.
                    if not self._failing:
                        log.warning("state store checkpoint failed", extra={"error": str(exc)})
                    self._failing = True
                else:
                    if self._failing:
                        log.info("state store checkpoints again")
                    self._failing = False
                if stopping:
                    return
        finally:
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
