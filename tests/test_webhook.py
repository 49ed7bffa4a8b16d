"""The webhook path end to end: body → parse → normalize → record → /metrics, on the real app."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from exporter.metrics import families
from exporter.stores.sqlite import SQLiteStore
from tests.conftest import FAILURE_FLOW, SUCCESS_FLOW, Clock, MakeClient, fixture_bytes
from tests.payload_builders import alert, body, legacy, run_object


def flow(registry: CollectorRegistry, name: str, flow_id: str, **labels: str) -> float | None:
    """A per-flow sample of the prod sandbox."""
    return registry.get_sample_value(name, {"sandbox": "prod", "flow_id": flow_id, **labels})


def notifications(registry: CollectorRegistry, kind: str, outcome: str) -> float:
    """aep_exporter_notifications_total for one kind and outcome of the webhook."""
    value = registry.get_sample_value(
        "aep_exporter_notifications_total", {"source": "webhook", "kind": kind, "outcome": outcome}
    )
    assert value is not None
    return value


async def post(client: Any, payload: bytes, **headers: str) -> Any:
    """POST a delivery to the webhook."""
    return await client.post("/webhook", data=payload, headers=headers)


async def test_challenge_echoes_the_value(make_client: MakeClient) -> None:
    """GET with ?challenge= answers 200 text/plain with exactly the URL-decoded value."""
    client, _, _ = await make_client()
    response = await client.get("/webhook?challenge=8ec8d794-e0ab%2042df")
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "8ec8d794-e0ab 42df"


async def test_health_and_landing(make_client: MakeClient) -> None:
    """/healthz, /readyz and / answer once the store is open."""
    client, _, _ = await make_client()
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    landing = await client.get("/")
    assert "/metrics" in await landing.text()


async def test_seeds_are_counted_exactly_once(make_client: MakeClient) -> None:
    """The two seed payloads yield the contract's numbers; re-posting them changes nothing."""
    client, registry, _ = await make_client()
    for _ in range(2):
        for name in ("seed_success.json", "seed_failure.json"):
            response = await post(client, fixture_bytes(name))
            assert response.status == 200, await response.text()

    assert flow(registry, "aep_flow_runs_total", SUCCESS_FLOW, status="success") == 1
    assert flow(registry, "aep_flow_runs_total", SUCCESS_FLOW, status="failed") == 0
    assert flow(registry, "aep_flow_runs_total", FAILURE_FLOW, status="failed") == 1
    assert flow(registry, "aep_flow_runs_total", FAILURE_FLOW, status="success") == 0
    assert flow(registry, "aep_flow_input_records_total", SUCCESS_FLOW) == 100
    assert flow(registry, "aep_flow_output_records_total", SUCCESS_FLOW) == 70
    assert flow(registry, "aep_flow_input_bytes_total", SUCCESS_FLOW) == 2048
    assert flow(registry, "aep_flow_output_files_total", SUCCESS_FLOW) == 10
    for code in ("CONNECTOR-2001-500", "133"):
        assert flow(registry, "aep_flow_run_errors_total", FAILURE_FLOW, error_code=code) == 1
    assert flow(registry, "aep_flow_input_bytes_total", FAILURE_FLOW) == 0
    assert flow(registry, "aep_flow_input_files_total", FAILURE_FLOW) == 0
    assert (
        flow(registry, "aep_flow_last_run_timestamp_seconds", FAILURE_FLOW, status="failed")
        == 1597434157.567
    )
    assert flow(registry, "aep_flow_last_run_success", FAILURE_FLOW) == 0
    assert flow(registry, "aep_flow_last_run_success", SUCCESS_FLOW) == 1
    # The success seed's run lasted 0 s: observed; the failure seed has no completion: not.
    assert flow(registry, "aep_flow_run_duration_seconds_count", SUCCESS_FLOW) == 1
    assert flow(registry, "aep_flow_run_duration_seconds_bucket", SUCCESS_FLOW, le="10.0") == 1
    assert flow(registry, "aep_flow_run_duration_seconds_count", FAILURE_FLOW) == 0
    assert flow(registry, "aep_flow_last_run_duration_seconds", SUCCESS_FLOW) == 0
    assert flow(registry, "aep_flow_last_run_duration_seconds", FAILURE_FLOW) is None
    assert flow(registry, "aep_flow_last_run_input_records", FAILURE_FLOW) is None
    copy = {"activity": "copyActivity", "status": "success"}
    assert flow(registry, "aep_flow_activity_runs_total", SUCCESS_FLOW, **copy) == 1
    assert notifications(registry, "run", "recorded") == 2
    assert notifications(registry, "run", "duplicate") == 2
    assert registry.get_sample_value("aep_exporter_tracked_flows") == 2


async def test_duplicates_by_event_id_header_and_domain_key(make_client: MakeClient) -> None:
    """A document is a duplicate when any of its keys was seen: event id, header id, run key."""
    client, registry, _ = await make_client()
    first = legacy("evt-1", run_object(run_id="run-1"))
    assert (await post(client, body(first))).status == 200
    # Same event id, different body: still a duplicate.
    await post(client, body(legacy("evt-1", run_object(run_id="run-2"))))
    # New event id, same run and outcome: the domain key catches it.
    await post(client, body(legacy("evt-2", run_object(run_id="run-1"))))
    # A bare run without an event id, header id seen before: duplicate.
    bare = run_object(run_id="run-3")
    await post(client, body(bare), **{"x-adobe-event-id": "hdr-1"})
    await post(client, body(run_object(run_id="run-4")), **{"x-adobe-event-id": "hdr-1"})
    assert flow(registry, "aep_flow_runs_total", "flow-a", status="success") == 2
    assert notifications(registry, "run", "duplicate") == 3


async def test_batch_ignores_the_header_event_id(make_client: MakeClient) -> None:
    """With several documents in a body, the x-adobe-event-id header is no de-duplication key."""
    client, registry, _ = await make_client()
    header = {"x-adobe-event-id": "batch-header"}
    batch_one = [legacy("e1", run_object(run_id="r1")), legacy("e2", run_object(run_id="r2"))]
    batch_two = [legacy("e3", run_object(run_id="r3")), legacy("e4", run_object(run_id="r4"))]
    assert (await post(client, body(batch_one), **header)).status == 200
    assert (await post(client, body(batch_two), **header)).status == 200
    assert flow(registry, "aep_flow_runs_total", "flow-a", status="success") == 4


async def test_out_of_order_runs_never_move_last_run_backwards(make_client: MakeClient) -> None:
    """A late notification counts but leaves the newest-run gauges alone."""
    client, registry, _ = await make_client()
    newer = run_object(
        run_id="new", status="failed", started_ms=1_790_000_000_000, completed_ms=1_790_000_100_000
    )
    older = run_object(
        run_id="old",
        status="success",
        started_ms=1_000_000_000_000,
        completed_ms=1_000_000_030_000,
        input_records=5,
    )
    await post(client, body(legacy("a", newer)))
    await post(client, body(legacy("b", older)))
    assert flow(registry, "aep_flow_runs_total", "flow-a", status="success") == 1
    assert flow(registry, "aep_flow_last_run_success", "flow-a") == 0
    assert flow(registry, "aep_flow_last_run_duration_seconds", "flow-a") == 100
    assert flow(registry, "aep_flow_last_run_input_records", "flow-a") == 10
    stamp = flow(registry, "aep_flow_last_run_timestamp_seconds", "flow-a", status="success")
    assert stamp == 1_000_000_030


async def test_start_then_completion_closes_the_run(make_client: MakeClient) -> None:
    """A start opens a run; its completion closes it; a late start of a done run stays closed."""
    client, registry, _ = await make_client()
    start = run_object(run_id="r1", status="inProgress", completed_ms=None)
    await post(client, body(legacy("s1", start, code="source_flow_run_info")))
    assert flow(registry, "aep_flow_runs_in_progress", "flow-a") == 1
    assert flow(registry, "aep_flow_runs_started_total", "flow-a") == 1
    await post(client, body(legacy("c1", run_object(run_id="r1"))))
    assert flow(registry, "aep_flow_runs_in_progress", "flow-a") == 0
    await post(client, body(legacy("c2", run_object(run_id="r2"))))
    late = run_object(run_id="r2", status="inProgress", completed_ms=None)
    await post(client, body(legacy("s2", late, code="source_flow_run_info")))
    assert flow(registry, "aep_flow_runs_in_progress", "flow-a") == 0
    assert flow(registry, "aep_flow_runs_started_total", "flow-a") == 2


async def test_alert_fires_resolves_and_ignores_older_documents(make_client: MakeClient) -> None:
    """FIRING sets 1, INACTIVE sets 0, and an older document never overrides a newer state."""
    client, registry, _ = await make_client()
    await post(client, body(alert(status="FIRING", created="2026-01-01T00:00:00Z")))
    assert flow(registry, "aep_flow_alert_active", "flow-a", alert="delay") == 1
    await post(
        client,
        body(
            alert(
                status="INACTIVE", created="2026-01-01T00:00:00Z", resolved="2026-01-01T02:00:00Z"
            )
        ),
    )
    assert flow(registry, "aep_flow_alert_active", "flow-a", alert="delay") == 0
    await post(client, body(alert(status="FIRING", created="2026-01-01T01:00:00Z")))
    assert flow(registry, "aep_flow_alert_active", "flow-a", alert="delay") == 0
    error_rate = alert(status="FIRING", name="sources_ingestion_error_rate_exceeded")
    await post(client, body(error_rate))
    assert flow(registry, "aep_flow_alert_active", "flow-a", alert="error_rate") == 1
    # Counters of a flow first seen through an alert exist at 0.
    assert flow(registry, "aep_flow_runs_total", "flow-a", status="failed") == 0


async def test_unknown_documents_become_dead_letters_once(make_client: MakeClient) -> None:
    """A verified-but-unknown document is answered 200 and stored once as a dead letter."""
    client, registry, exporter = await make_client()
    strange = body({"something": "else", "eventid": "odd-1"})
    for _ in range(2):
        assert (await post(client, strange)).status == 200
    assert notifications(registry, "unknown", "dead_lettered") == 1
    assert notifications(registry, "unknown", "duplicate") == 1
    assert registry.get_sample_value("aep_exporter_dead_letters_stored") == 1
    assert registry.get_sample_value("aep_exporter_dead_letters_total") == 1
    letters = await exporter.recorder.run_in_writer(exporter.recorder.store.dead_letters)
    assert [letter.event_id for letter in letters] == ["odd-1"]


async def test_validation_message_is_not_counted(make_client: MakeClient) -> None:
    """The asynchronous-validation POST is acknowledged and never counted."""
    client, registry, _ = await make_client()
    url = "https://csm.adobe.io/csm/registrations/validate?id=a&challenge=b"
    response = await post(client, body({"validationUrl": url}))
    assert response.status == 200
    webhook = [(kind, outcome) for source, kind, outcome in families.NOTIFICATIONS.children()
               if source == "webhook"]  # fmt: skip
    assert webhook
    for kind, outcome in webhook:
        assert notifications(registry, kind, outcome) == 0


async def test_other_services_are_ignored(make_client: MakeClient) -> None:
    """Identity and destination documents are acknowledged as other_service/ignored."""
    client, registry, _ = await make_client()
    identity = legacy("id-1", run_object(run_id="i1"), code="identity_ingestion_info")
    response = await post(client, body(identity))
    assert response.status == 200
    assert notifications(registry, "other_service", "ignored") == 1
    assert registry.get_sample_value("aep_exporter_tracked_flows") == 0


async def test_insecure_mode_refuses_non_json(make_client: MakeClient) -> None:
    """Unsigned mode answers 400 invalid_json to a body that is not JSON."""
    client, registry, _ = await make_client()
    response = await post(client, b"{not json")
    assert response.status == 400
    rejected = {"reason": "invalid_json"}
    assert registry.get_sample_value("aep_exporter_requests_rejected_total", rejected) == 1


async def test_oversized_body_is_refused(make_client: MakeClient) -> None:
    """A body over the limit gets 413, also when it arrives chunked."""
    client, registry, _ = await make_client(max_body_bytes=2048)
    response = await post(client, b"[" + b" " * 4096 + b"]")
    assert response.status == 413

    async def chunks() -> Any:
        for _ in range(8):
            yield b" " * 1024

    response = await client.post("/webhook", data=chunks())
    assert response.status == 413
    reason = {"reason": "body_too_large"}
    assert registry.get_sample_value("aep_exporter_requests_rejected_total", reason) == 2


async def test_other_methods_are_refused(make_client: MakeClient) -> None:
    """PUT on the webhook gets 405 and counts method_not_allowed."""
    client, registry, _ = await make_client()
    assert (await client.put("/webhook", data=b"{}")).status == 405
    reason = {"reason": "method_not_allowed"}
    assert registry.get_sample_value("aep_exporter_requests_rejected_total", reason) == 1


async def test_flow_cap_overflows_into_other(make_client: MakeClient) -> None:
    """Beyond the flow cap, new flows are counted under flow_id="other"."""
    client, registry, _ = await make_client(max_flows=2)
    for index in range(4):
        run = run_object(run_id=f"r{index}", flow_id=f"flow-{index}")
        assert (await post(client, body(legacy(f"e{index}", run)))).status == 200
    assert flow(registry, "aep_flow_runs_total", "flow-0", status="success") == 1
    assert flow(registry, "aep_flow_runs_total", "flow-3", status="success") is None
    assert flow(registry, "aep_flow_runs_total", "other", status="success") == 2
    assert registry.get_sample_value("aep_exporter_flows_overflow_total") == 2


async def test_error_codes_are_capped_per_flow(make_client: MakeClient) -> None:
    """After 50 distinct codes a flow's further codes count as "other"."""
    client, registry, _ = await make_client()
    for index in range(52):
        run = run_object(run_id=f"r{index}", status="failed", errors=[f"CODE-{index}"])
        await post(client, body(legacy(f"e{index}", run)))
    assert flow(registry, "aep_flow_run_errors_total", "flow-a", error_code="CODE-49") == 1
    assert flow(registry, "aep_flow_run_errors_total", "flow-a", error_code="CODE-50") is None
    assert flow(registry, "aep_flow_run_errors_total", "flow-a", error_code="other") == 2


async def test_one_run_with_more_codes_than_the_cap_stays_within_it(
    make_client: MakeClient,
) -> None:
    """55 distinct codes in one run: the first 50 count, the other five are one "other"."""
    client, registry, _ = await make_client()
    codes = [f"CODE-{index}" for index in range(55)]
    run = run_object(run_id="r1", status="failed", errors=codes)
    assert (await post(client, body(legacy("e1", run)))).status == 200
    exposed = await (await client.get("/metrics")).text()
    labelled = [line for line in exposed.splitlines() if line.startswith("aep_flow_run_errors")]
    assert len(labelled) == 51
    assert flow(registry, "aep_flow_run_errors_total", "flow-a", error_code="CODE-49") == 1
    assert flow(registry, "aep_flow_run_errors_total", "flow-a", error_code="CODE-50") is None
    assert flow(registry, "aep_flow_run_errors_total", "flow-a", error_code="other") == 1
    # The cap is full: a later run's new code is "other" too, counted once more.
    run = run_object(run_id="r2", status="failed", errors=["NEW-1", "NEW-2", "CODE-3"])
    assert (await post(client, body(legacy("e2", run)))).status == 200
    assert flow(registry, "aep_flow_run_errors_total", "flow-a", error_code="other") == 2
    assert flow(registry, "aep_flow_run_errors_total", "flow-a", error_code="CODE-3") == 2


async def test_one_run_with_more_activities_than_the_cap_stays_within_it(
    make_client: MakeClient,
) -> None:
    """30 activities in one run: 20 keep their label, the rest are "other" once per status."""
    client, registry, _ = await make_client()
    run = run_object(run_id="r1")
    run["activities"] = [
        {"id": f"activity-{index}", "statusSummary": {"status": "success"}} for index in range(30)
    ]
    assert (await post(client, body(legacy("e1", run)))).status == 200
    exposed = await (await client.get("/metrics")).text()
    activities = {
        line.split('activity="')[1].split('"')[0]
        for line in exposed.splitlines()
        if line.startswith("aep_flow_activity_runs_total")
    }
    assert activities == {f"activity-{index}" for index in range(20)} | {"other"}
    labels = {"activity": "other", "status": "success"}
    assert flow(registry, "aep_flow_activity_runs_total", "flow-a", **labels) == 1
    labels = {"activity": "activity-19", "status": "success"}
    assert flow(registry, "aep_flow_activity_runs_total", "flow-a", **labels) == 1


async def test_store_failure_answers_503_and_recovers(
    make_client: MakeClient, clock: Clock
) -> None:
    """When the store cannot write: 503, readiness false, store_ready 0; then recovery."""
    client, registry, exporter = await make_client()
    store = exporter.recorder.store
    assert isinstance(store, SQLiteStore)
    await exporter.recorder.run_in_writer(lambda: store.db.execute("PRAGMA query_only=ON"))
    response = await post(client, body(legacy("e1", run_object(run_id="r1"))))
    assert response.status == 503
    assert (await client.get("/readyz")).status == 503
    assert registry.get_sample_value("aep_exporter_store_ready") == 0
    reason = {"reason": "store_unavailable"}
    assert registry.get_sample_value("aep_exporter_requests_rejected_total", reason) == 1
    await exporter.recorder.run_in_writer(lambda: store.db.execute("PRAGMA query_only=OFF"))
    await exporter.recorder.probe()
    assert (await client.get("/readyz")).status == 200
    response = await post(client, body(legacy("e1", run_object(run_id="r1"))))
    assert response.status == 200
    assert flow(registry, "aep_flow_runs_total", "flow-a", status="success") == 1


async def test_last_notification_is_absent_until_one_is_recorded(
    make_client: MakeClient, clock: Clock
) -> None:
    """The last-notification gauge never shows a 1970 timestamp; it survives a restart."""
    client, registry, _ = await make_client()
    name = "aep_exporter_last_notification_timestamp_seconds"
    assert registry.get_sample_value(name) is None
    assert name not in await (await client.get("/metrics")).text()
    await post(client, body(legacy("e1", run_object(run_id="r1"))))
    assert registry.get_sample_value(name) == clock.now
    await client.close()
    _, restarted, _ = await make_client()
    assert restarted.get_sample_value(name) == clock.now
