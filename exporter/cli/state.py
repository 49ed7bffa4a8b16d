"""`dead-letters`, `backup`, `migrate-state`: work on the state store outside `serve`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from exporter.cli.options import UsageError, settings_from_args
from exporter.config import Settings
from exporter.domain import NO_RECIPIENTS, Source, Unrecognized
from exporter.durations import parse_duration
from exporter.ingest import Delivery
from exporter.metrics.self_metrics import SelfMetrics
from exporter.rejections import Rejected
from exporter.service import build_pipeline, build_recorder
from exporter.stores import build_store
from exporter.stores.migrate import copy_sqlite_to_postgres
from exporter.stores.postgres import PostgresStore
from exporter.stores.protocol import DeadLetter, StateStore
from exporter.stores.sqlite import SQLiteStore


@contextlib.contextmanager
def state_lock(settings: Settings, *, wait: bool) -> Iterator[None]:
    """Hold `<state>.lock` so offline commands never change a SQLite file a running service uses
    (PostgreSQL needs none: every replica and command shares it under row locks)."""
    if settings.shared_state:
        yield
        return
    with sqlite_lock(settings.state_path, wait=wait):
        yield


@contextlib.contextmanager
def sqlite_lock(state_path: Path, *, wait: bool) -> Iterator[None]:
    """Hold `<state>.lock` beside a SQLite state file."""
    lock_path = state_path.with_name(state_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise UsageError(
                f"{state_path} is in use by a running exporter; stop it first"
            ) from None
        yield


def _open_store(settings: Settings) -> StateStore:
    """Open the store and check its integrity, as `serve` does: a damaged store is one line."""
    store = build_store(settings)
    store.open()
    try:
        store.check_integrity()
    except BaseException:
        store.close()
        raise
    return store


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List, show, replay or purge dead letters."""
    settings = settings_from_args(args)
    if args.action in ("list", "show"):
        store = _open_store(settings)
        try:
            ids = [int(i) for i in args.ids] if args.action == "show" else None
            letters = store.dead_letters(ids)
        finally:
            store.close()
        for letter in letters:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(letter.received_at))
            print(
                f"{letter.id}\t{when}\t{letter.reason}\t{letter.event_id or '-'}\t"
                f"{len(letter.body)} bytes"
            )
            if args.action == "show":
                print(letter.body.decode("utf-8", "replace"))
        if args.action == "show" and len(letters) != len(ids or []):
            print("some ids were not found", file=sys.stderr)
            return 1
        return 0
    with state_lock(settings, wait=False):
        if args.action == "purge":
            store = _open_store(settings)
            try:
                older = time.time() - parse_duration(args.older_than) if args.older_than else None
                removed = store.purge_dead_letters(older)
            finally:
                store.close()
            print(f"purged {removed} dead letters")
            return 0
        if not args.all and not args.ids:
            raise UsageError("replay needs dead-letter ids or --all")
        ids = None if args.all else [int(i) for i in args.ids]
        return asyncio.run(replay_dead_letters(settings, ids))


async def replay_dead_letters(settings: Settings, ids: Sequence[int] | None) -> int:
    """Run stored dead letters through today's pipeline; recorded ones leave the dead letters.

    The live path's rules apply, recipients included: a letter the live path would refuse is
    refused (and kept, for `purge`), one line each, and the exit status is 1.
    """
    recorder = build_recorder(settings)
    # Replay's own counts are not the service's: they go to a registry nobody scrapes.
    metrics = SelfMetrics(CollectorRegistry(), verification_on=settings.verification_on)
    pipeline = build_pipeline(settings, recorder, metrics)
    await recorder.open()
    not_recorded = 0
    try:
        letters = await recorder.run_in_writer(lambda: recorder.store.dead_letters(ids))
        for letter in letters:
            delivery = _delivery_of(letter)
            try:
                documents = pipeline.documents(letter.body, delivery)
                unknown = [d.event for d in documents if isinstance(d.event, Unrecognized)]
                if unknown:
                    print(f"{letter.id}: still not understood: {unknown[0].reason}")
                    not_recorded += 1
                    continue
                ingested = await pipeline.ingest(documents, delivery)
            except Rejected as refused:
                print(f"{letter.id}: refused: {refused}")
                not_recorded += 1
                continue
            await recorder.run_in_writer(lambda i=letter.id: _delete_letter(recorder.store, i))  # type: ignore[misc]
            print(f"{letter.id}: {', '.join(r.value for r in ingested.results)}")
    finally:
        await recorder.close()
    return 1 if not_recorded else 0


def _delivery_of(letter: DeadLetter) -> Delivery:
    """A stored letter as a delivery again: proven when it was stored, with its recipients."""
    # Letters stored before recipient data was kept are judged by what their body says.
    recipients = letter.recipients or NO_RECIPIENTS
    # Every dead letter today came through the webhook, the only source that stores them.
    return Delivery(
        Source.WEBHOOK,
        letter.received_at,
        verified=True,
        header_event_id=letter.event_id,
        recipients=recipients,
    )


def _delete_letter(store: StateStore, letter_id: int) -> None:
    with store.transaction():
        store.delete_dead_letters([letter_id])


def cmd_backup(args: argparse.Namespace) -> int:
    """Write a consistent copy of the state store (safe while the service runs)."""
    settings = settings_from_args(args)
    if settings.shared_state:
        raise UsageError(
            "backup copies the SQLite state file; the state is in PostgreSQL "
            "(AEP_EXPORTER_STATE_URL): back it up with pg_dump, e.g. "
            "pg_dump --format=custom --file=aep-state.dump DATABASE"
        )
    store = SQLiteStore(settings.state_path, bucket_count=len(settings.duration_buckets) + 1)
    store.open()
    try:
        store.check_integrity()  # a damaged store is one line, and no backup is written
        store.backup(Path(args.path))
    finally:
        store.close()
    print(f"backup written to {args.path}")
    return 0


def cmd_migrate_state(args: argparse.Namespace) -> int:
    """Copy a SQLite state file into the PostgreSQL store named by AEP_EXPORTER_STATE_URL."""
    settings = settings_from_args(args)
    if not settings.shared_state:
        raise UsageError(
            "migrate-state needs the target: set AEP_EXPORTER_STATE_URL or --state-url"
        )
    source_path = Path(args.source)
    if not source_path.is_file():
        raise UsageError(f"{source_path} is not a state file")
    buckets = len(settings.duration_buckets) + 1
    with sqlite_lock(source_path, wait=False):
        source = SQLiteStore(source_path, bucket_count=buckets)
        target = PostgresStore(settings.state_url.get_secret_value(), bucket_count=buckets)
        try:
            source.open()
            target.open()
            copied = copy_sqlite_to_postgres(source, target, replace=args.force)
        finally:
            source.close()
            target.close()
    print(
        f"copied {copied.flows} flows, {copied.keys} de-duplication keys, "
        f"{copied.dead_letters} dead letters, {copied.cursors} cursors "
        f"from {source_path} to {target.location}"
    )
    return 0
