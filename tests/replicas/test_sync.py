"""Replica sync in process: two recorders on one database publish each other's commits."""

from __future__ import annotations

from exporter.domain import FlowKey
from exporter.normalize import normalize_body
from exporter.recorder import BatchOutcome, Limits, Recorder
from exporter.stores.postgres import PostgresStore
from tests.payload_builders import body, legacy, run_object
from tests.postgres import PostgresCluster

FLOW = FlowKey("prod", "flow-a")


async def record_run(recorder: Recorder, number: int, flow_id: str = "flow-a") -> None:
    """Record one successful run of a flow."""
    run = run_object(run_id=f"run-{number}", flow_id=flow_id)
    await recorder.record(normalize_body(body(legacy(f"evt-{number}", run)), received_at=9.0), 9.0)


async def test_a_replica_publishes_what_another_committed(postgres: PostgresCluster) -> None:
    """B's published records equal A's after a sync; only changed flows reach on_batch."""
    url = postgres.create_database()
    a = Recorder(PostgresStore(url, bucket_count=1), Limits(max_flows=2))
    b = Recorder(PostgresStore(url, bucket_count=1), Limits(max_flows=2))
    await a.open()
    await b.open()
    batches: list[BatchOutcome] = []
    b.on_batch.append(batches.append)
    store_b = b.store
    assert isinstance(store_b, PostgresStore)
    try:
        await b.run_in_writer(store_b.flow_changes)  # B's first, full read
        await record_run(a, 1)
        await record_run(b, 2, "flow-b")
        assert b.publish_changes(await b.run_in_writer(store_b.flow_changes)) == 1
        # B's own batch, then A's flow alone: B's own commit came back unchanged.
        assert [set(batch.changed) for batch in batches] == [{FlowKey("prod", "flow-b")}, {FLOW}]
        assert b.flows[FLOW].to_json() == a.store.load_flows()[FLOW].to_json()
        assert b.flows[FLOW].first_seen == a.flows[FLOW].first_seen
        # The flow cap counts the shared truth: a third flow on A folds into "other".
        await record_run(a, 3, "flow-c")
        assert FlowKey("prod", "other") in a.flows
        # Expiry on one replica removes the flow on the other at its next sync.
        await a.prune(
            now=9.0 + 10, flow_ttl=1, open_run_ttl=100, dedup_window=100, protected=lambda k: False
        )
        b.publish_changes(await b.run_in_writer(store_b.flow_changes))
        assert b.flows == {}
    finally:
        await a.close()
        await b.close()
