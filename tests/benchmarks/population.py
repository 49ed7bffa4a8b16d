"""Build a state store holding N flows through the product's own write path, before serving."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from exporter import identity
from exporter.config import Settings
from exporter.domain import Outcome
from exporter.normalize import normalize_body
from exporter.recorder import Limits, Recorder, Result
from exporter.stores.sqlite import SQLiteStore
from tests.benchmarks.corpus import flow_documents

# Flows per recorded body (at most 1000 documents per body) and transaction.
_FLOWS_PER_BATCH = 150


@dataclass(frozen=True, slots=True)
class Population:
    """A state file with `flows` flows and `keys` de-duplication keys, to copy per service."""

    path: Path
    flows: int
    keys: int
    seconds: float


async def _record(path: Path, flows: int) -> int:
    settings = Settings(state_path=path, insecure_accept_unsigned=True)
    limits = Limits(
        max_flows=settings.max_flows,
        duration_buckets=settings.duration_buckets,
    )
    store = SQLiteStore(path, bucket_count=len(settings.duration_buckets) + 1)
    recorder = Recorder(store, limits)
    await recorder.open()
    try:
        for first in range(0, flows, _FLOWS_PER_BATCH):
            # Received now, so the service's first maintenance pass expires nothing.
            now = time.time()
            batch = [
                document
                for flow in range(first, min(first + _FLOWS_PER_BATCH, flows))
                for document in flow_documents(flow, int(now * 1000))
            ]
            documents = normalize_body(json.dumps(batch).encode(), received_at=now)
            results = await recorder.record(documents, now)
            if any(result is not Result.RECORDED for result in results):
                raise RuntimeError(f"population documents not all recorded: {set(results)}")
        if len(recorder.flows) != flows:
            raise RuntimeError(f"expected {flows} flows, recorder holds {len(recorder.flows)}")
        return await recorder.run_in_writer(store.count_keys)
    finally:
        await recorder.close()


def populate(path: Path, flows: int) -> Population:
    """Record the full document set of `flows` flows into a new state file at `path`."""
    started = time.perf_counter()
    keys = asyncio.run(_record(path, flows))
    return Population(path, flows, keys, time.perf_counter() - started)


def add_hourly_run_keys(source: Population, path: Path, hours: int) -> Population:
    """A copy of `source` plus the keys of one run per flow per hour for `hours` hours (the
    event id and the run's domain key, as a notification leaves them), claimed through the
    store's own claim_keys at their hour, the newest now: what a de-duplication window keeps."""
    started = time.perf_counter()
    shutil.copyfile(source.path, path)
    store = SQLiteStore(path, bucket_count=len(Settings().duration_buckets) + 1)
    store.open()
    now = time.time()
    try:
        for hour in range(hours):
            with store.transaction():
                for flow in range(source.flows):
                    run = f"bench-run-{flow}-{hour}"
                    keys = [
                        identity.event_key(f"evt-{run}"),
                        identity.run_key(run, Outcome.SUCCESS),
                    ]
                    store.claim_keys(keys, now - hour * 3600)
        total = store.count_keys()
    finally:
        store.close()
    return Population(path, source.flows, total, time.perf_counter() - started)
