"""The running service's parts, wired once from settings, and the background work they need."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from exporter.adobe.wiring import AdobeServices, build_adobe
from exporter.catalogue import Catalogue, load_catalogue
from exporter.config import Settings
from exporter.domain import FlowKey
from exporter.ingest import Pipeline, RecipientRules
from exporter.leadership import Leadership
from exporter.metrics.flows import FlowCollector
from exporter.metrics.rendering import FlowExposition
from exporter.metrics.self_metrics import SelfMetrics
from exporter.recorder import BatchOutcome, Limits, Recorder
from exporter.sources.webhook import WebhookSource
from exporter.stores import build_leader_lock, build_store, store_location
from exporter.stores.protocol import DeadLetterBounds, SharedStateStore, StoreUnavailable
from exporter.verify.keys import PublicKeyStore
from exporter.verify.signatures import DeliveryVerifier

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 60.0
READINESS_RETRY_INTERVAL = 2.0


@dataclass
class Exporter:
    """Everything a running exporter holds; built once, shared by its listeners."""

    settings: Settings
    metrics: SelfMetrics
    recorder: Recorder
    pipeline: Pipeline
    webhook: WebhookSource
    keys: PublicKeyStore | None
    clock: Callable[[], float]
    exposition: FlowExposition
    leadership: Leadership
    catalogue: Catalogue = field(default_factory=Catalogue)
    # The Adobe API client and pollers; None without the IMS credentials.
    adobe: AdobeServices | None = None

    def protected(self, key: FlowKey, now: float) -> bool:
        """Whether a flow is kept past its TTL: catalogued, or Flow Service still lists it."""
        return key in self.catalogue or (self.adobe is not None and self.adobe.protects(key, now))

    def reload_catalogue(self) -> None:
        """Re-read the catalogue file; on error keep the current one and raise CatalogueError."""
        self.catalogue = load_catalogue(self.settings.catalogue_path)
        log.info("catalogue loaded", extra={"flows": len(self.catalogue)})


def build_recorder(
    settings: Settings, on_ready: Callable[[bool], None] = lambda ready: None
) -> Recorder:
    """The write path over the configured state store, with the configured bounds."""
    limits = Limits(
        max_flows=settings.max_flows,
        duration_buckets=settings.duration_buckets,
        dead_letters=DeadLetterBounds(settings.max_dead_letters, settings.max_dead_letter_bytes),
        probe_bytes=settings.max_body_bytes,
    )
    return Recorder(build_store(settings), limits, on_ready=on_ready)


def build_pipeline(settings: Settings, recorder: Recorder, metrics: SelfMetrics) -> Pipeline:
    """The ingest pipeline with the configured recipient rules (live deliveries and replay)."""
    return Pipeline(
        recorder,
        metrics,
        recipients=RecipientRules(frozenset(settings.client_ids), settings.require_recipient),
        max_json_depth=settings.max_json_depth,
    )


def build_exporter(
    settings: Settings, registry: CollectorRegistry, *, clock: Callable[[], float] = time.time
) -> Exporter:
    """Wire the parts from settings; nothing is started or opened yet."""
    metrics = SelfMetrics(
        registry,
        verification_on=settings.verification_on,
        adobe_apis=settings.adobe_apis,
        sources=settings.sources,
    )
    recorder = build_recorder(settings, lambda ready: metrics.store_ready.set(1 if ready else 0))
    keys: PublicKeyStore | None = None
    verifier: DeliveryVerifier | None = None
    if settings.verification_on:
        keys = PublicKeyStore(
            base_url=settings.public_key_base_url,
            pinned_dir=settings.pinned_keys_dir,
            cache_ttl=settings.key_cache_ttl,
            fetch_timeout=settings.key_fetch_timeout,
            max_unknown_fetches=settings.max_key_fetches,
            on_fetch=lambda result: metrics.key_fetches.labels(result).inc(),
        )
        verifier = DeliveryVerifier(
            keys=keys, client_secret=settings.client_secret.get_secret_value()
        )
    pipeline = build_pipeline(settings, recorder, metrics)
    webhook = WebhookSource(
        pipeline,
        metrics,
        verifier,
        max_body_bytes=settings.max_body_bytes,
        read_timeout=settings.read_timeout,
        max_in_flight=settings.max_in_flight,
        max_receiving=settings.max_receiving,
        max_decompressing=settings.max_decompressing,
        clock=clock,
    )
    enrichment = settings.flow_enrichment_on
    exposition = FlowExposition(settings.duration_buckets, enrichment=enrichment)
    leadership = Leadership(
        build_leader_lock(settings),
        settings.replica_sync_interval,
        on_change=lambda leader: metrics.leader.set(1 if leader else 0),
    )
    exporter = Exporter(
        settings, metrics, recorder, pipeline, webhook, keys, clock, exposition, leadership
    )
    exporter.reload_catalogue()
    exporter.adobe = build_adobe(
        settings,
        metrics,
        recorder,
        pipeline,
        flow_ttl=settings.flow_ttl,
        catalogued=lambda: exporter.catalogue.entries,
        clock=clock,
    )
    metrics.tracked_flows.set_function(lambda: len(recorder.flows))
    metrics.dead_letters_stored.set_function(lambda: recorder.dead_letters_stored)
    recorder.on_batch.append(lambda outcome: _count_batch(metrics, outcome))
    recorder.on_batch.append(lambda outcome: exposition.note_changed(outcome.changed))
    registry.register(
        FlowCollector(
            lambda: recorder.flows,
            lambda: exporter.catalogue,
            settings.duration_buckets,
            enrichment=enrichment,
        )
    )
    return exporter


def _count_batch(metrics: SelfMetrics, outcome: BatchOutcome) -> None:
    if outcome.overflowed:
        metrics.flows_overflow.inc(outcome.overflowed)
    if outcome.dead_letters_added:
        metrics.dead_letters.inc(outcome.dead_letters_added)
    if outcome.dead_letters_evicted:
        metrics.dead_letters_evicted.inc(outcome.dead_letters_evicted)


async def _maintain(exporter: Exporter) -> None:
    """Every minute: expire flows and stale open runs, forget old de-duplication keys."""
    settings, recorder = exporter.settings, exporter.recorder
    while True:
        try:
            if recorder.ready:
                now = exporter.clock()
                await recorder.prune(
                    now=now,
                    flow_ttl=settings.flow_ttl,
                    open_run_ttl=settings.open_run_ttl,
                    dedup_window=settings.dedup_window,
                    protected=functools.partial(exporter.protected, now=now),
                )
        except StoreUnavailable as exc:
            recorder.mark_ready(False, str(exc))
        await asyncio.sleep(MAINTENANCE_INTERVAL)


async def _sync_replicas(recorder: Recorder, store: SharedStateStore, interval: float) -> None:
    """Every interval: publish the flow records other replicas committed (the shared truth)."""
    while True:
        await asyncio.sleep(interval)
        try:
            changes = await recorder.run_in_writer(store.flow_changes)
        except StoreUnavailable as exc:
            recorder.mark_ready(False, str(exc))
            continue
        recorder.publish_changes(changes)


async def _watch_store(recorder: Recorder) -> None:
    """While the store is not ready, probe it with a delivery-sized transaction (Recorder.probe)
    and restore readiness once one commits."""
    while True:
        await asyncio.sleep(READINESS_RETRY_INTERVAL)
        if not recorder.ready:
            await recorder.probe()


def start_pollers(exporter: Exporter) -> None:
    """Start the Adobe pollers: enrichment, registration, journal, reconciliation.

    The one place they start (with stop_pollers the one place they stop); they poll only while
    this replica holds the leadership (protocol notes §18.15).
    """
    if exporter.adobe is not None:
        exporter.adobe.start(exporter.leadership)


async def stop_pollers(exporter: Exporter) -> None:
    """Stop the Adobe pollers; a journal page being recorded commits first."""
    if exporter.adobe is not None:
        await exporter.adobe.stop_pollers()


@contextlib.asynccontextmanager
async def running(exporter: Exporter) -> AsyncIterator[None]:
    """Open the store and run the background tasks; on exit stop them and close everything."""
    recorder = exporter.recorder
    await recorder.open()
    for state in recorder.flows.values():
        if state.last_received > 0:  # 0: listed by Flow Service, never heard from
            exporter.metrics.last_notification.set(state.last_received)
    # The loaded records live long: keep the cyclic collector from rescanning them (its full
    # passes over 10 000 flows pause the event loop for tens of milliseconds).
    gc.freeze()
    loaded = {"flows": len(recorder.flows), "dead_letters": recorder.dead_letters_stored}
    log.info("state loaded", extra={**loaded, "path": store_location(exporter.settings)})
    # Leadership is settled before the service counts as started: a poller asks at once.
    await exporter.leadership.renew()
    tasks = [
        asyncio.create_task(exporter.leadership.run(), name="leadership"),
        asyncio.create_task(_maintain(exporter), name="maintenance"),
        asyncio.create_task(_watch_store(recorder), name="store-watch"),
        asyncio.create_task(
            exporter.exposition.warm(lambda: recorder.flows, lambda: exporter.catalogue),
            name="exposition-warm",
        ),
    ]
    if isinstance(recorder.store, SharedStateStore):
        sync = _sync_replicas(recorder, recorder.store, exporter.settings.replica_sync_interval)
        tasks.append(asyncio.create_task(sync, name="replica-sync"))
    start_pollers(exporter)
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await stop_pollers(exporter)
        if exporter.adobe is not None:
            await exporter.adobe.stop()
        if exporter.keys is not None:
            await exporter.keys.close()
        await recorder.close()
