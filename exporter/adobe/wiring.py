"""The Adobe API side of a running service: one client, one token, the pollers it configures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from exporter.adobe.client import AdobeClient
from exporter.adobe.enrichment import FlowEnricher, known_sandboxes
from exporter.adobe.flow_service import FlowService
from exporter.adobe.ims import TokenProvider
from exporter.adobe.registration import RegistrationWatcher
from exporter.adobe.settings import AdobeSettings
from exporter.domain import FlowKey
from exporter.ingest import Pipeline
from exporter.leadership import Leadership
from exporter.metrics.families import PollTask
from exporter.metrics.self_metrics import SelfMetrics
from exporter.recorder import Recorder
from exporter.sources.journal import JournalPoller
from exporter.sources.reconcile import Reconciler

log = logging.getLogger(__name__)


@dataclass
class AdobeServices:
    """The shared client and token provider, and the pollers that use them."""

    client: AdobeClient
    tokens: TokenProvider
    enricher: FlowEnricher | None = None
    registration: RegistrationWatcher | None = None
    journal: JournalPoller | None = None
    reconciler: Reconciler | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, leadership: Leadership) -> None:
        """Run the pollers in the background while this replica leads (protocol notes §18.15)."""
        self._tasks.append(asyncio.create_task(self._lead(leadership), name="adobe-pollers"))

    async def _lead(self, leadership: Leadership) -> None:
        """Forever: wait for leadership, poll while it lasts, stop polling when it is lost."""
        pollers = {
            "flow-enrichment": self.enricher.run if self.enricher else None,
            "registration-health": self.registration.run if self.registration else None,
            "journal": self.journal.run if self.journal else None,
            "reconcile": self.reconciler.run if self.reconciler else None,
        }
        while True:
            await leadership.wait_until_leader()
            async with asyncio.TaskGroup() as group:
                running = [
                    group.create_task(run(), name=name)
                    for name, run in pollers.items()
                    if run is not None
                ]
                await leadership.wait_until_lost()
                for task in running:
                    task.cancel()

    async def stop_pollers(self) -> None:
        """Stop the pollers (a page being recorded commits first); start() may run them again."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def stop(self) -> None:
        """Stop the pollers, then close the token provider and the client."""
        await self.stop_pollers()
        await self.tokens.close()
        await self.client.close()

    def protects(self, key: FlowKey, now: float) -> bool:
        """Whether Flow Service keeps this flow from expiring now."""
        return self.enricher is not None and self.enricher.protects(key, now)


def build_adobe(
    settings: AdobeSettings,
    metrics: SelfMetrics,
    recorder: Recorder,
    pipeline: Pipeline,
    *,
    flow_ttl: float,
    catalogued: Callable[[], Iterable[FlowKey]],
    clock: Callable[[], float] = time.time,
) -> AdobeServices | None:
    """The Adobe side the settings ask for; None (nothing at all) without the IMS credentials."""
    if not settings.enabled:
        return None
    client = AdobeClient(on_request=metrics.count_adobe_request, clock=clock)
    tokens = TokenProvider.from_settings(
        client, settings, on_expiry=metrics.token_expiry.set, clock=clock
    )
    services = AdobeServices(client, tokens)

    def succeeded(task: PollTask) -> Callable[[], None]:
        return lambda: metrics.poll_last_success.labels(task.value).set(clock())

    if settings.flow_enrichment_on:
        enricher = FlowEnricher(
            FlowService(tokens, settings.platform_url),
            recorder,
            interval=settings.flow_refresh_interval,
            flow_ttl=flow_ttl,
            sandboxes=settings.sandboxes,
            known_keys=catalogued,
            on_success=succeeded(PollTask.FLOWS),
            clock=clock,
        )
        recorder.on_batch.append(lambda outcome: enricher.note_flows(outcome.changed))
        services.enricher = enricher
    if settings.registration_url and settings.registration_poll_interval > 0:
        services.registration = RegistrationWatcher(
            tokens,
            settings.registration_url,
            interval=settings.registration_poll_interval,
            info=metrics.registration_info,
            healthy=metrics.registration_healthy,
            on_success=succeeded(PollTask.REGISTRATION),
        )
    if settings.journal_on:
        services.journal = JournalPoller(
            tokens,
            pipeline,
            recorder,
            url=settings.journal_url,
            start=settings.journal_start,
            on_success=succeeded(PollTask.JOURNAL),
            on_reset=metrics.journal_cursor_resets.inc,
            clock=clock,
        )
    if settings.reconcile_on:
        services.reconciler = Reconciler(
            FlowService(tokens, settings.platform_url),
            pipeline,
            recorder,
            sandboxes=lambda: known_sandboxes(settings.sandboxes, [*recorder.flows, *catalogued()]),
            interval=settings.reconcile_interval,
            window=settings.reconcile_window,
            on_success=succeeded(PollTask.RECONCILE),
            clock=clock,
        )

    apis = {
        "flow_enrichment": "on" if services.enricher is not None else "off",
        "registration": "on" if services.registration is not None else "off",
        "journal": "on" if services.journal is not None else "off",
        "reconcile": "on" if services.reconciler is not None else "off",
        "sandboxes": ",".join(settings.sandboxes) or "(seen in notifications or the catalogue)",
    }
    log.info("adobe apis on", extra=apis)
    return services
