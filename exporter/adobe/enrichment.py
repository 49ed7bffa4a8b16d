"""Flow enrichment: names, source types, states and schedules from Flow Service (notes §11).

Every refresh lists each sandbox's source flows; a flow first seen in a notification between
refreshes is looked up by id. What Flow Service says goes into the flow records through the
recorder (persisted, so a restart shows the same names before Adobe answers again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from exporter.adobe.client import AdobeError
from exporter.adobe.flow_service import FlowService, enrichment_of, flow_id_of, source_spec_id
from exporter.adobe.polling import PollState, run_every
from exporter.adobe.settings import SANDBOX_NAME
from exporter.domain import OTHER, FlowKey
from exporter.recorder import Recorder
from exporter.records import FlowEnrichment

log = logging.getLogger(__name__)

# Source-type names are organization-independent: cached a day (protocol notes §11.4).
SPEC_CACHE_SECONDS = 86400.0
# A 404 can mean an access label hides the flow (protocol notes §11.1): asked again after an hour.
NOT_FOUND_CACHE_SECONDS = 3600.0


def known_sandboxes(configured: Iterable[str], keys: Iterable[FlowKey]) -> frozenset[str]:
    """The configured sandboxes, else every sandbox of these flows that Flow Service can name."""
    chosen = frozenset(configured)
    return chosen or frozenset(k.sandbox for k in keys if SANDBOX_NAME.fullmatch(k.sandbox))


class FlowEnricher:
    """Keeps the flow records' Flow Service enrichment current, per sandbox."""

    def __init__(
        self,
        service: FlowService,
        recorder: Recorder,
        *,
        interval: float,
        flow_ttl: float,
        sandboxes: Iterable[str] = (),
        known_keys: Callable[[], Iterable[FlowKey]] = tuple,
        on_success: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._service = service
        self._recorder = recorder
        self._interval = interval
        self._ttl = flow_ttl
        self._configured = frozenset(sandboxes)
        # The catalogue's flows: their sandboxes are listed too when none are configured.
        self._known_keys = known_keys
        self._on_success = on_success
        self._clock = clock
        self._listed: dict[str, frozenset[str]] = {}  # sandbox -> flow ids of its last listing
        self._missing_since: dict[FlowKey, float] = {}
        self._specs: dict[str, tuple[str | None, float]] = {}  # spec id -> (name, until)
        self._not_found: dict[FlowKey, float] = {}  # flow -> asked again after
        self._pending: dict[FlowKey, None] = {}  # flows to look up by id, in order
        self._wake = asyncio.Event()
        self._capped = False  # whether the flow cap left listed flows out (logged once)
        self.refresh_state = PollState("flow refresh")
        self.lookup_state = PollState("flow lookup")

    async def run(self) -> None:
        """Forever: refresh every interval, and look up new flows as they are noted."""
        async with asyncio.TaskGroup() as group:
            group.create_task(run_every(self._interval, self.refresh, self.refresh_state))
            group.create_task(self._look_up_noted())

    def sandboxes(self) -> frozenset[str]:
        """The configured sandboxes, else every sandbox of a tracked or catalogued flow."""
        return known_sandboxes(self._configured, [*self._recorder.flows, *self._known_keys()])

    def note_flows(self, keys: Iterable[FlowKey]) -> None:
        """Flows notifications just changed: those Flow Service never described are looked up."""
        now = self._clock()
        for key in keys:
            if key in self._pending or not self._enriches(key):
                continue
            state = self._recorder.flows.get(key)
            if state is not None and state.enrichment is not None:
                continue
            if key.flow_id in self._listed.get(key.sandbox, ()):
                continue
            if self._not_found.get(key, 0.0) > now:
                continue
            self._pending[key] = None
            self._wake.set()

    def protects(self, key: FlowKey, now: float) -> bool:
        """Whether Flow Service keeps the flow from expiring: it lists the flow, stopped listing
        it less than the TTL ago, or has not been asked since start about a flow it described."""
        if not self._enriches(key):
            return False
        listed = self._listed.get(key.sandbox)
        if listed is None:
            state = self._recorder.flows.get(key)
            return state is not None and state.enrichment is not None
        if key.flow_id in listed:
            return True
        since = self._missing_since.get(key)
        return since is not None and now - since < self._ttl

    async def refresh(self) -> None:
        """List every sandbox's source flows and store what changed; raises the first failure
        after trying every sandbox."""
        failure: Exception | None = None
        for sandbox in sorted(self.sandboxes()):
            try:
                await self._refresh_sandbox(sandbox)
            except AdobeError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        self._on_success()

    async def _refresh_sandbox(self, sandbox: str) -> None:
        items: dict[str, dict[str, Any]] = {}
        async for page in self._service.list_flows(sandbox):
            for item in page:
                flow_id = flow_id_of(item)
                if flow_id is not None:
                    items.setdefault(flow_id, item)
        failure: AdobeError | None = None
        enrichments: dict[FlowKey, FlowEnrichment] = {}
        for flow_id, item in items.items():
            key = FlowKey(sandbox, flow_id)
            try:
                enrichments[key] = await self._describe(key, item)
            except AdobeError as exc:
                # The name, state and schedule are known; the source keeps its stored value.
                failure = failure or exc
                enrichments[key] = self._with_stored_source(key, item)
        now = self._clock()
        self._listed[sandbox] = frozenset(items)
        for key in [k for k in self._missing_since if k.sandbox == sandbox]:
            if key.flow_id in items:
                del self._missing_since[key]
        for key, state in list(self._recorder.flows.items()):
            if key.sandbox == sandbox and state.enrichment is not None and key.flow_id not in items:
                self._missing_since.setdefault(key, now)
        await self._store(enrichments, now)
        if failure is not None:
            raise failure

    async def _look_up_noted(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                key = next(iter(self._pending))
                try:
                    await self._look_up(key)
                except Exception as exc:  # noqa: BLE001 - a poller never stops; logged once
                    self.lookup_state.failed(exc)
                else:
                    self.lookup_state.succeeded()
                finally:
                    self._pending.pop(key, None)

    async def _look_up(self, key: FlowKey) -> None:
        item = await self._service.flow(key.sandbox, key.flow_id)
        if item is None:
            self._not_found[key] = self._clock() + NOT_FOUND_CACHE_SECONDS
            return
        self._not_found.pop(key, None)
        enrichment = await self._describe(key, item)
        await self._store({key: enrichment}, self._clock())

    async def _describe(self, key: FlowKey, item: dict[str, Any]) -> FlowEnrichment:
        spec_id = source_spec_id(item)
        if spec_id is None:
            return enrichment_of(item, None)
        now = self._clock()
        cached = self._specs.get(spec_id)
        if cached is None or cached[1] <= now:
            name = await self._service.connection_spec_name(key.sandbox, spec_id)
            until = now + (SPEC_CACHE_SECONDS if name is not None else NOT_FOUND_CACHE_SECONDS)
            cached = self._specs[spec_id] = (name, until)
        return enrichment_of(item, cached[0])

    def _with_stored_source(self, key: FlowKey, item: dict[str, Any]) -> FlowEnrichment:
        state = self._recorder.flows.get(key)
        stored = state.enrichment if state is not None else None
        return enrichment_of(item, stored.source if stored is not None else None)

    async def _store(self, enrichments: dict[FlowKey, FlowEnrichment], now: float) -> None:
        left_out = await self._recorder.apply_enrichment(enrichments, now)
        if left_out and not self._capped:
            log.warning(
                "flow cap reached: flows Flow Service lists are left untracked"
                " (AEP_EXPORTER_MAX_FLOWS)",
                extra={"count": left_out},
            )
        self._capped = left_out > 0

    def _enriches(self, key: FlowKey) -> bool:
        if key.flow_id == OTHER or not SANDBOX_NAME.fullmatch(key.sandbox):
            return False
        return not self._configured or key.sandbox in self._configured
