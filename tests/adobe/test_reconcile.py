"""Reconciliation and backfill against the loopback fake's Flow Service (protocol notes §12)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.adobe import fake_documents as documents
from exporter.adobe.fake import FakeAdobe
from exporter.adobe.fake_thread import FakeAdobeThread
from exporter.adobe.flow_service import FlowService
from exporter.cli.state import sqlite_lock
from exporter.service import Exporter
from exporter.sources.reconcile import SETTLE_SECONDS, Reconciler
from tests.adobe.conftest import WallClock, adobe_settings, until
from tests.conftest import MakeClient
from tests.payload_builders import legacy, run_object
from tests.support import clean_environ

NOTIFICATIONS = "aep_exporter_notifications_total"


def ms(seconds: float) -> int:
    """Epoch milliseconds, as Flow Service writes times."""
    return int(seconds * 1000)


def serve_runs(fake: FakeAdobe, now: float, runs: list[dict[str, Any]]) -> None:
    """Flow f1 in prod with these runs; its last run is the last one given."""
    last = runs[-1]
    details = {
        "id": last["id"],
        "state": last["metrics"]["statusSummary"]["status"],
        "startedAtUTC": last["metrics"]["durationSummary"]["startedAtUTC"],
    }
    fake.flows["prod"] = [documents.flow("f1", last_run=details)]
    fake.runs["prod"] = runs
    fake.connection_specs[documents.S3_SPEC_ID] = documents.connection_spec()


def hourly(number: int, now: float, status: str = "success") -> dict[str, Any]:
    """Run r<number> of flow f1, started `number` hours before the last one, an hour ago."""
    started = now - 3600 * (5 - number)
    completed = None if status == "inProgress" else ms(started + 60)
    return documents.run(
        f"r{number}", "f1", status=status, started_ms=ms(started), completed_ms=completed
    )


def pushed(item: dict[str, Any]) -> bytes:
    """The webhook notification of a /runs item's run (same run id and outcome)."""
    metrics = item["metrics"]
    run = run_object(
        run_id=item["id"],
        flow_id="f1",
        status=metrics["statusSummary"]["status"],
        started_ms=metrics["durationSummary"]["startedAtUTC"],
        completed_ms=metrics["durationSummary"].get("completedAtUTC"),
    )
    return json.dumps(legacy(f"evt-{item['id']}", run)).encode()


def counted(registry: CollectorRegistry, source: str, outcome: str) -> float | None:
    """Run notifications of one source and outcome."""
    labels = {"source": source, "kind": "run", "outcome": outcome}
    return registry.get_sample_value(NOTIFICATIONS, labels)


def runs_total(registry: CollectorRegistry, status: str) -> float | None:
    """aep_flow_runs_total of flow f1."""
    labels = {"sandbox": "prod", "flow_id": "f1", "status": status}
    return registry.get_sample_value("aep_flow_runs_total", labels)


def reconciler_for(exporter: Exporter, fake: FakeAdobe, clock: WallClock) -> Reconciler:
    """A reconciler over the app's token, pipeline and store, cycles driven by the test."""
    assert exporter.adobe is not None
    service = FlowService(exporter.adobe.tokens, fake.base_url)
    return Reconciler(
        service, exporter.pipeline, exporter.recorder, sandboxes=lambda: ["prod"], clock=clock
    )


async def test_reconciliation_records_the_runs_only_flow_service_knows(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """Runs no notification brought are recorded once with source flow_service, paged (2 per
    page); a run the webhook delivered is neither recorded again nor counted; the webhook's
    later copy of a reconciled run is a duplicate."""
    now = clock()
    runs = [hourly(1, now), hourly(2, now, "failed"), hourly(3, now), hourly(4, now)]
    serve_runs(fake, now, runs)
    client, registry, exporter = await make_client(**adobe_settings(fake))
    assert (await client.post("/webhook", data=pushed(runs[0]))).status == 200
    await reconciler_for(exporter, fake, clock).cycle()
    assert runs_total(registry, "success") == 3
    assert runs_total(registry, "failed") == 1
    assert counted(registry, "flow_service", "recorded") == 3
    assert counted(registry, "webhook", "recorded") == 1
    assert not counted(registry, "flow_service", "duplicate")
    pages = fake.requests_to("runs")
    assert len(pages) == 2
    assert pages[0].query.getall("property") == [
        "flowId==f1",
        f"metrics.durationSummary.startedAtUTC>{ms(now - 86400)}",
    ]
    assert (await client.post("/webhook", data=pushed(runs[2]))).status == 200
    assert counted(registry, "webhook", "duplicate") == 1
    assert runs_total(registry, "success") == 3


async def test_a_run_with_a_lone_surrogate_is_recorded(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """A /runs item holding `"\\ud800"` (valid JSON, not UTF-8) is recorded like the others,
    its text cleaned, instead of failing every cycle."""
    now = clock()
    broken = hourly(1, now)
    broken["flowName"] = "flow \ud800 one"
    serve_runs(fake, now, [broken, hourly(2, now)])
    _, registry, exporter = await make_client(**adobe_settings(fake))
    await reconciler_for(exporter, fake, clock).cycle()
    assert runs_total(registry, "success") == 2
    assert next(st for k, st in exporter.recorder.flows.items() if k.flow_id == "f1").flow_name == (
        "flow \ufffd one"
    )


async def test_in_progress_runs_wait_until_finished(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """An inProgress run is not recorded (nor one completed moments ago); once Flow Service
    reports it finished, the next cycle records it; the service's own cycle runs at start."""
    now = clock()
    serve_runs(fake, now, [hourly(1, now), hourly(2, now, "inProgress")])
    _, registry, exporter = await make_client(**adobe_settings(fake, reconcile_interval=3600))
    done = {"task": "reconcile"}
    await until(
        lambda: registry.get_sample_value("aep_exporter_poll_last_success_timestamp_seconds", done),
        "the first reconciliation, at start",
    )
    assert counted(registry, "flow_service", "recorded") == 1
    reconciler = reconciler_for(exporter, fake, clock)
    recent = documents.run("r2", "f1", started_ms=ms(now - 300), completed_ms=ms(now - 60))
    fake.runs["prod"][1] = recent
    await reconciler.cycle()
    assert counted(registry, "flow_service", "recorded") == 1  # settling: the push comes first
    clock.advance(SETTLE_SECONDS)
    await reconciler.cycle()
    assert counted(registry, "flow_service", "recorded") == 2
    assert runs_total(registry, "success") == 2


async def test_a_flow_whose_last_run_is_recorded_is_not_paged(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """The gap detector: the flows listing names each last run; a recorded one means no /runs
    request for that flow (protocol notes §12.1)."""
    now = clock()
    runs = [hourly(1, now), hourly(2, now)]
    serve_runs(fake, now, runs)
    client, registry, exporter = await make_client(**adobe_settings(fake))
    assert (await client.post("/webhook", data=pushed(runs[1]))).status == 200
    await reconciler_for(exporter, fake, clock).cycle()
    assert fake.requests_to("runs") == []
    listing = [r for r in fake.requests_to("flows") if len(r.query.getall("property")) == 2]
    assert listing[-1].query.getall("property")[1] == (
        f"lastRunDetails.startedAtUTC>={ms(now - 86400)}"
    )
    assert not counted(registry, "flow_service", "recorded")


async def test_run_items_in_their_documented_variants_are_understood(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """`activites`, `eTag`, null summaries, no sandboxName and errors on a success (protocol
    notes §12.2): the run is recorded with its activity and its error code."""
    now = clock()
    item = hourly(1, now)
    del item["sandboxName"], item["activities"], item["etag"]
    item.update(
        eTag='"1"',
        activites=[{"id": "copyActivity", "statusSummary": {"status": "success"}}],
        latencySummary=None,
        sourceInfo=None,
        predecessors=None,
    )
    item["metrics"]["statusSummary"]["errors"] = [{"code": "CONNECTOR-2001-500"}]
    serve_runs(fake, now, [item])
    _, registry, exporter = await make_client(**adobe_settings(fake))
    await reconciler_for(exporter, fake, clock).cycle()
    assert runs_total(registry, "success") == 1
    activity = {"sandbox": "prod", "flow_id": "f1", "activity": "copyActivity"}
    samples = {**activity, "status": "success"}
    assert registry.get_sample_value("aep_flow_activity_runs_total", samples) == 1
    code = {"sandbox": "prod", "flow_id": "f1", "error_code": "CONNECTOR-2001-500"}
    assert registry.get_sample_value("aep_flow_run_errors_total", code) == 1


def test_backfill_is_idempotent_and_refuses_a_store_in_use(tmp_path: Path) -> None:
    """`backfill --since 2d` records the window's runs with progress and a summary; run again
    it records nothing and counts them as duplicates; beside a service it refuses."""
    fake = FakeAdobe()
    state = tmp_path / "state.db"
    with FakeAdobeThread(fake):
        now = fake.clock()
        serve_runs(fake, now, [hourly(n, now) for n in range(1, 5)])
        env = clean_environ(
            {
                "AEP_EXPORTER_STATE_PATH": str(state),
                **fake.exporter_settings(),
                "AEP_EXPORTER_SANDBOXES": "prod",
            }
        )
        command = [sys.executable, "-m", "exporter", "backfill", "--since", "2d"]

        def backfill() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=30, check=False
            )

        first = backfill()
        assert first.returncode == 0, first.stderr
        assert "prod: flows 1/1, runs recorded 4, duplicates 0" in first.stdout
        assert "backfill done: since 48h, flows 1/1, runs recorded 4, duplicates 0" in first.stdout
        second = backfill()
        assert second.returncode == 0, second.stderr
        assert "runs recorded 0, duplicates 4" in second.stdout
        with sqlite_lock(state, wait=False):
            refused = backfill()
        assert refused.returncode == 2
        assert "in use by a running exporter" in refused.stderr
