"""Flow enrichment through the real service: Flow Service names, sources, schedules and states."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.adobe import fake_documents as documents
from exporter.adobe.fake import FakeAdobe
from exporter.domain import FlowKey
from exporter.records import FlowEnrichment, FlowState
from exporter.service import Exporter
from tests.adobe.conftest import WallClock, adobe_settings, flow_samples, until
from tests.conftest import AppClient, MakeClient
from tests.payload_builders import body, run_object

STREAMING_SPEC_ID = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"
FLOWS_DONE = "aep_exporter_poll_last_success_timestamp_seconds"


def prod_flows() -> list[dict[str, Any]]:
    """Five source flows, three pages at the fake's page size of 2 (protocol notes §11.3)."""
    hourly = documents.flow("f1", name="CRM accounts")  # interval "1" as a string
    quarter = documents.flow("f2", name="Orders", frequency="minute")
    quarter["scheduleParams"]["interval"] = 15  # an integer, as the spec says
    once = documents.flow("f3", name="Backfill", frequency="once")
    del once["scheduleParams"]["interval"]
    streaming = documents.flow("f4", name="Clickstream", frequency=None)
    streaming["inheritedAttributes"]["sourceConnections"][0]["connectionSpec"]["id"] = (
        STREAMING_SPEC_ID
    )
    disabled = documents.flow("f5", name="Old export", state="disabled", frequency="day")
    return [hourly, quarter, once, streaming, disabled]


def serve_prod(fake: FakeAdobe) -> None:
    """The fake lists prod_flows and names both connection specs."""
    fake.flows["prod"] = prod_flows()
    fake.connection_specs[documents.S3_SPEC_ID] = documents.connection_spec()
    fake.connection_specs[STREAMING_SPEC_ID] = documents.connection_spec(
        STREAMING_SPEC_ID, "HTTP API"
    )


async def enriched(
    make_client: MakeClient, fake: FakeAdobe, **overrides: Any
) -> tuple[AppClient, CollectorRegistry, Exporter]:
    """The real app against the fake, once its first refresh at start has succeeded."""
    client, registry, exporter = await make_client(**adobe_settings(fake, **overrides))
    await until(
        lambda: registry.get_sample_value(FLOWS_DONE, {"task": "flows"}) is not None,
        "the first flow refresh",
    )
    return client, registry, exporter


async def test_flow_service_names_sources_schedules_and_states(
    make_client: MakeClient, fake: FakeAdobe
) -> None:
    """Listed flows get their name, source type, interval (string or integer) and state."""
    serve_prod(fake)
    _, registry, _ = await enriched(make_client, fake)
    info = flow_samples(registry, "aep_flow_info")
    assert {flow: labels["flow_name"] for flow, (labels, _) in info.items()} == {
        "f1": "CRM accounts",
        "f2": "Orders",
        "f3": "Backfill",
        "f4": "Clickstream",
        "f5": "Old export",
    }
    assert info["f1"][0]["source"] == "Amazon S3"
    assert info["f4"][0]["source"] == "HTTP API"
    intervals = flow_samples(registry, "aep_flow_expected_interval_seconds")
    # once and streaming flows have no expected interval (protocol notes §11.3).
    assert {flow: value for flow, (_, value) in intervals.items()} == {
        "f1": 3600.0,
        "f2": 900.0,
        "f5": 86400.0,
    }
    enabled = flow_samples(registry, "aep_flow_enabled")
    assert {flow: value for flow, (_, value) in enabled.items()} == {
        "f1": 1.0,
        "f2": 1.0,
        "f3": 1.0,
        "f4": 1.0,
        "f5": 0.0,
    }
    # Listed flows are tracked before their first run: counters at 0.
    labels = {"sandbox": "prod", "flow_id": "f5", "status": "success"}
    assert registry.get_sample_value("aep_flow_runs_total", labels) == 0.0


async def test_listing_pages_resend_filters_and_specs_are_asked_once(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """Three pages follow the next links with the filter re-sent; each spec is named once."""
    serve_prod(fake)
    _, registry, exporter = await enriched(make_client, fake)
    assert exporter.adobe is not None
    assert exporter.adobe.enricher is not None
    await exporter.adobe.enricher.refresh()
    pages = fake.requests_to("flows")
    assert len(pages) == 6  # 3 pages, twice
    for page in pages:
        assert page.query.getall("property") == [
            "inheritedAttributes.properties.isSourceFlow==true"
        ]
        assert page.headers["x-sandbox-name"] == "prod"
    assert [("continuationToken" in p.query) for p in pages[:3]] == [False, True, True]
    # Two distinct specs among five flows, over two refreshes: cached for a day.
    assert len(fake.requests_to("connection_spec")) == 2
    # Every one of these API calls used the one token (protocol notes §8.2).
    assert fake.tokens_issued == 1
    expiry = registry.get_sample_value("aep_exporter_adobe_token_expiry_timestamp_seconds")
    assert expiry == clock.now + fake.expires_in
    ok = {"api": "flow_service", "result": "ok"}
    assert registry.get_sample_value("aep_exporter_adobe_requests_total", ok) == 8.0


async def test_a_refresh_that_changes_nothing_keeps_the_record_objects(
    make_client: MakeClient, fake: FakeAdobe
) -> None:
    """An unchanged listing leaves every record object identical (the renderer's cache holds)."""
    serve_prod(fake)
    _, _, exporter = await enriched(make_client, fake)
    assert exporter.adobe is not None
    assert exporter.adobe.enricher is not None
    before = dict(exporter.recorder.flows)
    await exporter.adobe.enricher.refresh()
    assert all(exporter.recorder.flows[key] is state for key, state in before.items())
    fake.flows["prod"][0]["name"] = "CRM accounts v2"
    await exporter.adobe.enricher.refresh()
    changed = [key.flow_id for key, s in before.items() if exporter.recorder.flows[key] is not s]
    assert changed == ["f1"]


async def test_the_catalogue_wins_where_it_names_a_value(
    make_client: MakeClient, fake: FakeAdobe, tmp_path: Path
) -> None:
    """Catalogue name, source and interval beat Flow Service; its silence lets Flow Service show."""
    serve_prod(fake)
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        "flows:\n"
        "  - {flow_id: f1, sandbox: prod, name: Catalogued, source: s3, expected_interval: 2h}\n"
        "  - {flow_id: f2, sandbox: prod, owner: commerce}\n"
    )
    _, registry, _ = await enriched(make_client, fake, catalogue_path=catalogue)
    info = flow_samples(registry, "aep_flow_info")
    assert (info["f1"][0]["flow_name"], info["f1"][0]["source"]) == ("Catalogued", "s3")
    assert (info["f2"][0]["flow_name"], info["f2"][0]["source"]) == ("Orders", "Amazon S3")
    assert info["f2"][0]["owner"] == "commerce"
    intervals = flow_samples(registry, "aep_flow_expected_interval_seconds")
    assert intervals["f1"][1] == 7200.0
    assert intervals["f2"][1] == 900.0


async def test_a_new_flow_in_a_notification_is_looked_up_and_a_404_is_cached(
    make_client: MakeClient, fake: FakeAdobe
) -> None:
    """Between refreshes a new flow is fetched by id; one Flow Service does not know keeps its
    payload name, and is asked once an hour at most."""
    serve_prod(fake)
    client, registry, _ = await enriched(make_client, fake)
    fake.flows["prod"].append(documents.flow("late", name="Late flow"))
    for run_id in ("r1", "r2"):
        await client.post("/webhook", data=body(run_object(run_id=run_id, flow_id="late")))
        ghost = run_object(run_id=f"g-{run_id}", flow_id="ghost", flow_name="From payload")
        await client.post("/webhook", data=body(ghost))
    await until(lambda: "late" in flow_samples(registry, "aep_flow_enabled"), "the look-up")
    await until(lambda: len(fake.requests_to("flow")) == 2, "both look-ups")
    info = flow_samples(registry, "aep_flow_info")
    assert info["late"][0]["flow_name"] == "Late flow"
    assert info["ghost"][0]["flow_name"] == "From payload"
    assert "ghost" not in flow_samples(registry, "aep_flow_enabled")
    assert sorted(r.path.rsplit("/", 1)[1] for r in fake.requests_to("flow")) == ["ghost", "late"]


async def test_flow_service_name_beats_the_payload_name(
    make_client: MakeClient, fake: FakeAdobe
) -> None:
    """A notification's flowName does not replace the name Flow Service gives."""
    serve_prod(fake)
    client, registry, _ = await enriched(make_client, fake)
    run = run_object(run_id="r1", flow_id="f1", flow_name="payload says")
    assert (await client.post("/webhook", data=body(run))).status == 200
    assert flow_samples(registry, "aep_flow_info")["f1"][0]["flow_name"] == "CRM accounts"


async def test_enrichment_survives_a_restart_with_adobe_down(
    make_client: MakeClient, fake: FakeAdobe
) -> None:
    """After a restart the stored enrichment shows the same series before Adobe answers."""
    serve_prod(fake)
    client, registry, _ = await enriched(make_client, fake)
    before = {
        name: flow_samples(registry, name)
        for name in ("aep_flow_info", "aep_flow_expected_interval_seconds", "aep_flow_enabled")
    }
    await client.close()
    await fake.close()
    _, registry, exporter = await make_client(**adobe_settings(fake))
    after = {name: flow_samples(registry, name) for name in before}
    assert after == before
    assert registry.get_sample_value(FLOWS_DONE, {"task": "flows"}) is None
    assert exporter.adobe is not None


async def test_listed_flows_expire_only_after_the_listing_drops_them_and_the_ttl_passes(
    make_client: MakeClient, fake: FakeAdobe, clock: WallClock
) -> None:
    """A listed flow never heard from is kept while listed, and a TTL after it was dropped."""
    serve_prod(fake)
    _, _, exporter = await enriched(make_client, fake, flow_ttl="1d")
    assert exporter.adobe is not None
    assert exporter.adobe.enricher is not None
    key = FlowKey("prod", "f5")

    async def prune() -> None:
        settings = exporter.settings
        await exporter.recorder.prune(
            now=clock.now,
            flow_ttl=settings.flow_ttl,
            open_run_ttl=settings.open_run_ttl,
            dedup_window=settings.dedup_window,
            protected=lambda k: exporter.protected(k, clock.now),
        )

    clock.advance(3 * 86400)
    await prune()
    assert key in exporter.recorder.flows
    fake.flows["prod"] = [f for f in fake.flows["prod"] if f["id"] != "f5"]
    await exporter.adobe.enricher.refresh()
    clock.advance(86400 - 60)
    await prune()
    assert key in exporter.recorder.flows
    clock.advance(120)
    await prune()
    assert key not in exporter.recorder.flows
    assert FlowKey("prod", "f1") in exporter.recorder.flows


def test_records_keep_their_enrichment_and_older_records_load_without_it() -> None:
    """FlowState JSON round-trips the enrichment; a record stored before it existed has none."""
    key = FlowKey("prod", "f1")
    state = FlowState.new(key, 1.0, 2)
    state.enrichment = FlowEnrichment("CRM", "Amazon S3", "disabled", 3600.0)
    stored = json.loads(json.dumps(state.to_json()))
    assert FlowState.from_json(key, stored, 2).enrichment == state.enrichment
    del stored["enrichment"]
    assert FlowState.from_json(key, stored, 2).enrichment is None
    assert state.enrichment.enabled is False
    assert FlowEnrichment().enabled is None
