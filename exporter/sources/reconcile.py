"""The Flow Service source: runs no notification reported, found by reconciliation (notes §12).

Per sandbox, the flows whose last run started in the window (one listing gives each flow's last
run id); for a flow whose last run is not recorded, its runs in the window, page by page. A
finished run not recorded yet goes through the one ingest pipeline as a run document with
`source="flow_service"`: its de-duplication key is the run's domain key (run id, outcome), the
same as the notification's, which is what makes webhook, journal and Flow Service agree.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from exporter import identity
from exporter.adobe.client import AdobeError
from exporter.adobe.flow_service import SOURCE_FLOWS, FlowService, flow_id_of
from exporter.adobe.polling import PollState, run_every
from exporter.domain import Outcome, Source
from exporter.ingest import Delivery, Pipeline
from exporter.normalize.values import FUTURE_SLACK, ID_LIMIT, identifier, time_field
from exporter.payloads.canonical import compact_json
from exporter.recorder import Recorder, Result

log = logging.getLogger(__name__)

# A run that completed less than this ago waits for the next cycle: the webhook or the journal
# normally delivers it first, and a run reconciliation records is a notification that was missed.
SETTLE_SECONDS = 600.0
_OUTCOMES = {"success": Outcome.SUCCESS, "failed": Outcome.FAILED}
_WAITING = "inprogress"


@dataclass(slots=True)
class Tally:
    """What one reconciliation did (printed by `backfill` as it goes)."""

    flows_total: int = 0
    flows_done: int = 0
    recorded: int = 0
    duplicates: int = 0  # finished runs already recorded by some source
    waiting: int = 0  # in progress, or completed too recently
    refused: int = 0  # dead-lettered or ignored by the pipeline: not a run it understood


def run_document(item: dict[str, Any], sandbox: str, flow_id: str) -> bytes:
    """A `/runs` item as the run document of a notification (the variants of notes §12.2)."""
    document = dict(item)
    # The spec misspells `activities`; the flow and sandbox are known from the query.
    if "activities" not in document and "activites" in document:
        document["activities"] = document.pop("activites")
    if not isinstance(document.get("flowId"), str):
        document["flowId"] = flow_id
    if not isinstance(document.get("sandboxName"), str):
        document["sandboxName"] = sandbox
    return compact_json(document)


def _status(item: dict[str, Any]) -> str | None:
    metrics = item.get("metrics")
    summary = metrics.get("statusSummary") if isinstance(metrics, dict) else None
    status = summary.get("status") if isinstance(summary, dict) else None
    # Documented capitalized in filters, lowercase in runs: compared lowercase (notes §12.1).
    return status.strip().lower() if isinstance(status, str) else None


def _completed(item: dict[str, Any], now: float) -> float | None:
    metrics = item.get("metrics")
    durations = metrics.get("durationSummary") if isinstance(metrics, dict) else None
    completed = durations.get("completedAtUTC") if isinstance(durations, dict) else None
    latest = now + FUTURE_SLACK
    return time_field(completed, "", [], latest) or time_field(
        item.get("updatedAt"), "", [], latest
    )


def _last_run_id(flow: dict[str, Any]) -> str | None:
    details = flow.get("lastRunDetails")
    return identifier(details.get("id"), ID_LIMIT) if isinstance(details, dict) else None


class Reconciler:
    """Records the finished runs Flow Service knows and no notification brought."""

    def __init__(
        self,
        service: FlowService,
        pipeline: Pipeline,
        recorder: Recorder,
        *,
        sandboxes: Callable[[], Iterable[str]],
        interval: float = 900.0,
        window: float = 86400.0,
        on_success: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._service = service
        self._pipeline = pipeline
        self._recorder = recorder
        self._sandboxes = sandboxes
        self._interval = interval
        self._window = window
        self._on_success = on_success
        self._clock = clock
        self.state = PollState("reconcile")

    async def run(self) -> None:
        """Forever: reconcile the window every interval; a failure never stops it."""
        await run_every(self._interval, self.cycle, self.state)

    async def cycle(self) -> None:
        """One reconciliation of the window."""
        tally = await self.reconcile(self._clock() - self._window)
        self._on_success()
        if tally.recorded:
            log.warning(
                "reconciliation recorded runs no push or journal source delivered",
                extra={"count": tally.recorded},
            )

    async def reconcile(
        self,
        since: float,
        *,
        every_flow: bool = False,
        settle: float = SETTLE_SECONDS,
        progress: Callable[[str, Tally], None] = lambda sandbox, tally: None,
        tally: Tally | None = None,
    ) -> Tally:
        """Reconcile runs started after `since`, counting into `tally`; every sandbox is tried,
        then the first failure is raised. `every_flow` pages every listed flow's runs, even one
        whose last run is recorded (backfill: earlier runs may be missing after an outage)."""
        tally = tally if tally is not None else Tally()
        failure: AdobeError | None = None
        for sandbox in sorted(set(self._sandboxes())):
            try:
                await self._sandbox(
                    sandbox, since, tally, every_flow=every_flow, settle=settle, progress=progress
                )
            except AdobeError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return tally

    async def _sandbox(
        self,
        sandbox: str,
        since: float,
        tally: Tally,
        *,
        every_flow: bool,
        settle: float,
        progress: Callable[[str, Tally], None],
    ) -> None:
        since_ms = int(since * 1000)
        flows: dict[str, dict[str, Any]] = {}
        listing = (SOURCE_FLOWS, ("property", f"lastRunDetails.startedAtUTC>={since_ms}"))
        async for page in self._service.list_flows(sandbox, listing):
            for item in page:
                flow_id = flow_id_of(item)
                if flow_id is not None:
                    flows.setdefault(flow_id, item)
        tally.flows_total += len(flows)
        for flow_id, item in flows.items():
            last = _last_run_id(item)
            if every_flow or last is None or not await self._seen(identity.completion_keys(last)):
                await self._flow_runs(sandbox, flow_id, since_ms, tally, settle)
            tally.flows_done += 1
            progress(sandbox, tally)

    async def _flow_runs(
        self, sandbox: str, flow_id: str, since_ms: int, tally: Tally, settle: float
    ) -> None:
        filters = (
            ("property", f"flowId=={flow_id}"),
            ("property", f"metrics.durationSummary.startedAtUTC>{since_ms}"),
        )
        async for page in self._service.list_items("runs", sandbox, filters):
            now = self._clock()
            bodies: list[bytes] = []
            for item in page:
                if not isinstance(item, dict):
                    continue
                status = _status(item)
                outcome = _OUTCOMES.get(status or "")
                if outcome is None:
                    # inProgress waits for its end; anything else is not a run state (§12.3).
                    tally.waiting += status == _WAITING
                    continue
                completed = _completed(item, now)
                if completed is not None and completed > now - settle:
                    tally.waiting += 1
                    continue
                run_id = identifier(item.get("id"), ID_LIMIT)
                if run_id is not None and await self._seen([identity.run_key(run_id, outcome)]):
                    tally.duplicates += 1
                    continue
                bodies.append(run_document(item, sandbox, flow_id))
            if bodies:
                await self._record(bodies, tally)

    async def _record(self, bodies: list[bytes], tally: Tally) -> None:
        delivery = Delivery(Source.FLOW_SERVICE, self._clock(), verified=True)
        page = await self._pipeline.ingest_bodies(bodies, delivery)
        for result in page.ingested.results:
            if result is Result.RECORDED:
                tally.recorded += 1
            elif result is Result.DUPLICATE:
                tally.duplicates += 1  # recorded by another source meanwhile
            else:
                tally.refused += 1

    async def _seen(self, keys: list[str]) -> bool:
        store = self._recorder.store
        return await self._recorder.run_in_writer(lambda: store.any_key_seen(keys))
