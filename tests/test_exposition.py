"""/metrics: both formats parse with every contract family, and restarts keep the series."""

from __future__ import annotations

import gzip
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import DEFAULT_DURATION_BUCKETS, Settings
from exporter.http.app import create_app
from exporter.metrics.families import FLOW_ENABLED, FLOW_FAMILIES
from exporter.metrics.flows import omitted_families
from tests.conftest import AppClient, Clock, MakeClient, fixture_bytes
from tests.payload_builders import alert, body, legacy, run_object

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


async def feed(client: AppClient) -> None:
    """Deliver the seeds plus a start, a partial-ingestion success and an alert."""
    payloads = [
        fixture_bytes("seed_success.json"),
        fixture_bytes("seed_failure.json"),
        body(
            legacy(
                "s1",
                run_object(run_id="open", status="inProgress", completed_ms=None),
                code="source_flow_run_info",
            )
        ),
        body(legacy("p1", run_object(run_id="p1", errors=["INGEST-1212-400"]))),
        body(alert(status="FIRING")),
    ]
    for payload in payloads:
        response = await client.post("/webhook", data=payload)
        assert response.status == 200, await response.text()


async def test_text_and_openmetrics_parse_with_every_family(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """Both exposition formats parse and hold every per-flow family this configuration has."""
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        "flows:\n  - flow_id: flow-a\n    sandbox: prod\n    name: Flow A\n"
        "    expected_interval: 1h\n    owner: data\n"
    )
    client, _, _ = await make_client(catalogue_path=catalogue)
    await feed(client)

    text = await (await client.get("/metrics")).text()
    names = {family.name for family in text_string_to_metric_families(text)}
    om_response = await client.get("/metrics", headers={"Accept": OPENMETRICS})
    assert om_response.headers["Content-Type"].startswith("application/openmetrics-text")
    om_text = await om_response.text()
    om_names = {family.name for family in om_families(om_text)}  # type: ignore[no-untyped-call]
    # Without Flow Service enrichment aep_flow_enabled is off, like the histogram without buckets.
    omitted = omitted_families(DEFAULT_DURATION_BUCKETS, enrichment=False)
    assert omitted == {FLOW_ENABLED}
    for family in FLOW_FAMILIES:
        if family in omitted:
            assert family.name not in names, family.name
            continue
        assert family.name in names, family.name
        assert family.name in om_names, family.name
    assert 'flow_name="Flow A"' in text
    assert 'aep_flow_expected_interval_seconds{flow_id="flow-a",sandbox="prod"} 3600.0' in text


async def test_gzip_is_negotiated(make_client: MakeClient) -> None:
    """Accept-Encoding: gzip gets a gzip body with the same content."""
    client, _, _ = await make_client()
    await feed(client)
    plain = await (await client.get("/metrics", headers={"Accept-Encoding": "identity"})).read()
    response = await client.get(
        "/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert response.headers["Content-Encoding"] == "gzip"
    zipped = gzip.decompress(await response.read())
    flow_lines = [line for line in plain.splitlines() if line.startswith(b"aep_flow_")]
    assert flow_lines
    assert flow_lines == [line for line in zipped.splitlines() if line.startswith(b"aep_flow_")]


async def test_catalogued_flow_has_zero_counters_and_info_before_any_run(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """A catalogued flow that never reported exposes counters at 0, info and its interval."""
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        "flows:\n  - flow_id: quiet\n    sandbox: dev\n    name: Quiet flow\n"
        "    expected_interval: 6h\n    severity: critical\n"
    )
    _, registry, _ = await make_client(catalogue_path=catalogue)
    labels = {"sandbox": "dev", "flow_id": "quiet"}
    assert registry.get_sample_value("aep_flow_runs_total", {**labels, "status": "failed"}) == 0
    assert registry.get_sample_value("aep_flow_expected_interval_seconds", labels) == 21600
    info = {
        **labels,
        "flow_name": "Quiet flow",
        "owner": "",
        "source": "",
        "flow_severity": "critical",
        "ims_org": "",
    }
    assert registry.get_sample_value("aep_flow_info", info) == 1
    assert registry.get_sample_value("aep_flow_last_run_success", labels) is None


async def test_restart_serves_the_same_flow_series(
    aiohttp_client: Callable[..., Awaitable[AppClient]],
    make_settings: Callable[..., Settings],
    clock: Clock,
) -> None:
    """After a restart on the same state file, the flow series are the same byte for byte."""
    settings = make_settings()

    async def scrape(app: web.Application, fed: bool) -> list[str]:
        client = await aiohttp_client(app)
        if fed:
            await feed(client)
        text = await (await client.get("/metrics")).text()
        await client.close()
        return [line for line in text.splitlines() if line.startswith("aep_flow_")]

    before = await scrape(create_app(settings, CollectorRegistry(), clock=clock), fed=True)
    after = await scrape(create_app(settings, CollectorRegistry(), clock=clock), fed=False)
    assert len(before) > 50
    assert before == after
