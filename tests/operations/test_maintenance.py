"""Expiry, pruning, dead-letter replay and schema migrations, on real state files."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from exporter.cli import main
from exporter.domain import NO_RECIPIENTS
from exporter.recorder import Limits, Recorder
from exporter.stores.protocol import DeadLetterBounds
from exporter.stores.sqlite import SQLiteStore
from tests.conftest import FIXTURES, Clock, MakeClient
from tests.payload_builders import body, legacy, run_object
from tests.stores.conftest import store_at_version

DAY = 86400.0


async def prune(exporter: object, clock: Clock) -> tuple[int, int]:
    """Run the maintenance step the background task runs every minute."""
    settings = exporter.settings  # type: ignore[attr-defined]
    return await exporter.recorder.prune(  # type: ignore[attr-defined, no-any-return]
        now=clock(),
        flow_ttl=settings.flow_ttl,
        open_run_ttl=settings.open_run_ttl,
        dedup_window=settings.dedup_window,
        protected=lambda key: key in exporter.catalogue,  # type: ignore[attr-defined]
    )


async def test_flows_expire_after_ttl_from_receipt_time(
    make_client: MakeClient, clock: Clock, tmp_path: Path
) -> None:
    """A flow not heard from for the TTL leaves /metrics; a catalogued one stays."""
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text("flows:\n  - flow_id: kept\n    sandbox: prod\n")
    client, registry, exporter = await make_client(catalogue_path=catalogue, flow_ttl="30d")
    # Event times from 2020 do not matter: the TTL counts from receipt.
    for flow_id in ("gone", "kept", "fresh"):
        run = run_object(run_id=f"r-{flow_id}", flow_id=flow_id, completed_ms=1_590_000_000_000)
        assert (await client.post("/webhook", data=body(legacy(flow_id, run)))).status == 200
    clock.now += 29 * DAY
    fresh = run_object(run_id="r-fresh-2", flow_id="fresh")
    await client.post("/webhook", data=body(legacy("fresh-2", fresh)))
    expired, _ = await prune(exporter, clock)
    assert expired == 0
    clock.now += 2 * DAY
    expired, _ = await prune(exporter, clock)
    assert expired == 1
    labels = {"sandbox": "prod", "status": "success"}
    assert registry.get_sample_value("aep_flow_runs_total", {**labels, "flow_id": "gone"}) is None
    assert registry.get_sample_value("aep_flow_runs_total", {**labels, "flow_id": "kept"}) == 1
    assert registry.get_sample_value("aep_flow_runs_total", {**labels, "flow_id": "fresh"}) == 2
    assert registry.get_sample_value("aep_exporter_tracked_flows") == 2


async def test_open_runs_and_dedup_keys_expire(make_client: MakeClient, clock: Clock) -> None:
    """Open runs leave after the open-run TTL; keys after the window (then a resend counts)."""
    client, registry, exporter = await make_client(open_run_ttl="24h", dedup_window="72h")
    start = run_object(run_id="s1", status="inProgress", completed_ms=None)
    await client.post("/webhook", data=body(legacy("s1", start, code="source_flow_run_info")))
    labels = {"sandbox": "prod", "flow_id": "flow-a"}
    assert registry.get_sample_value("aep_flow_runs_in_progress", labels) == 1
    clock.now += 25 * 3600
    await prune(exporter, clock)
    assert registry.get_sample_value("aep_flow_runs_in_progress", labels) == 0
    clock.now += 48 * 3600
    _, keys_removed = await prune(exporter, clock)
    assert keys_removed == 2  # the event id and the (run id, started) key
    await client.post("/webhook", data=body(legacy("s1", start, code="source_flow_run_info")))
    assert registry.get_sample_value("aep_flow_runs_started_total", labels) == 2


def test_replay_records_dead_letters_todays_parser_understands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dead letter stored by an older parser is recorded by replay and leaves the store."""
    state = tmp_path / "state.db"
    store = SQLiteStore(state, bucket_count=1)
    store.open()
    raw = body(legacy("late-1", run_object(run_id="late")))
    with store.transaction():
        store.add_dead_letter(
            received_at=1.0, reason="unknown document shape", event_id="late-1",
            doc_hash=hashlib.sha256(raw).hexdigest(), body=raw, recipients=NO_RECIPIENTS,
            bounds=DeadLetterBounds(10, 10**6),
        )  # fmt: skip
    store.close()
    monkeypatch.setenv("AEP_EXPORTER_STATE_PATH", str(state))
    assert main(["dead-letters", "replay", "--all"]) == 0
    assert "recorded" in capsys.readouterr().out
    recorder = Recorder(SQLiteStore(state, bucket_count=1), Limits())

    async def load() -> None:
        await recorder.open()
        await recorder.close()

    asyncio.run(load())
    assert recorder.dead_letters_stored == 0
    assert [flow.runs["success"] for flow in recorder.flows.values()] == [1]
    # Replaying the same notification again would be a duplicate, never a second count.
    assert main(["dead-letters", "replay", "--all"]) == 0


@pytest.mark.parametrize(
    ("envelope", "flags", "answer"),
    [
        ({"recipientclientid": "theirs"}, [], "refused: recipient_mismatch"),
        ({}, ["--require-recipient"], "refused: recipient_missing"),
        ({"recipient_client_id": "ours"}, ["--require-recipient"], "recorded"),
    ],
)
def test_replay_of_a_letter_from_before_recipients_were_kept_follows_its_body(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    envelope: dict[str, str],
    flags: list[str],
    answer: str,
) -> None:
    """A schema-2 letter (no recipient data) is judged by the recipient ids its body names."""
    state = tmp_path / "state.db"
    store_at_version(state, 2, letter=body({**envelope, **legacy("old-1", run_object(run_id="o"))}))
    monkeypatch.setenv("AEP_EXPORTER_STATE_PATH", str(state))
    status = main(["dead-letters", "replay", "--all", "--client-id", "ours", *flags])
    assert answer in capsys.readouterr().out
    assert status == (0 if answer == "recorded" else 1)
    store = SQLiteStore(state, bucket_count=1)
    store.open()
    assert store.count_dead_letters() == (0 if answer == "recorded" else 1)
    store.close()


async def test_backup_restores_to_identical_metrics(
    make_client: MakeClient, make_settings: Any, clock: Clock, tmp_path: Path
) -> None:
    """A backup taken while the service runs serves the same flow series once restored."""
    client, _, exporter = await make_client()
    for name in sorted(FIXTURES.glob("*.json")):
        assert (await client.post("/webhook", data=name.read_bytes())).status == 200
    before = await client.get("/metrics")
    flow_lines = [
        line for line in (await before.text()).splitlines() if line.startswith("aep_flow_")
    ]
    backup = tmp_path / "backup.db"
    store = exporter.recorder.store
    assert isinstance(store, SQLiteStore)
    await exporter.recorder.run_in_writer(lambda: store.backup(backup))
    await client.close()
    restored, _, _ = await make_client(make_settings(state_path=backup))
    text = await (await restored.get("/metrics")).text()
    assert [line for line in text.splitlines() if line.startswith("aep_flow_")] == flow_lines
    assert len(flow_lines) > 100
