"""The fast flow exposition equals prometheus_client's rendering, byte for byte, both formats."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from exporter.catalogue import Catalogue
from exporter.domain import FlowKey
from exporter.metrics.flows import FlowCollector
from exporter.metrics.rendering import FlowExposition
from exporter.records import FlowState
from exporter.service import Exporter
from tests.conftest import FIXTURES, MakeClient
from tests.payload_builders import body, legacy, run_object

CATALOGUE = """flows:
  - flow_id: flow-a
    sandbox: prod
    name: 'Quote " back\\slash'
    owner: data
    expected_interval: 90m
  - flow_id: never-seen
    sandbox: dev
    severity: critical
"""


def library_rendering(exporter: Exporter, *, openmetrics: bool) -> str:
    """The same records through FlowCollector and the library's encoders."""
    registry = CollectorRegistry()
    registry.register(
        FlowCollector(
            lambda: exporter.recorder.flows,
            lambda: exporter.catalogue,
            exporter.settings.duration_buckets,
        )
    )
    if openmetrics:
        rendered: bytes = openmetrics_latest(registry)  # type: ignore[no-untyped-call]
        return rendered.decode().removesuffix("# EOF\n")
    return generate_latest(registry).decode()


async def fast_rendering(exporter: Exporter, *, openmetrics: bool) -> str:
    """The flow section as /metrics renders it."""
    chunks = exporter.exposition.render(
        exporter.recorder.flows, exporter.catalogue, openmetrics=openmetrics
    )
    return b"".join([chunk async for chunk in chunks]).decode()


async def drain(
    exposition: FlowExposition, flows: dict[FlowKey, FlowState], *, openmetrics: bool = False
) -> bytes:
    """Render everything, as /metrics does."""
    chunks = exposition.render(flows, Catalogue(), openmetrics=openmetrics)
    return b"".join([chunk async for chunk in chunks])


async def feed_every_fixture(client: object) -> None:
    """Post every payload fixture (they cover every shape and quirk)."""
    for path in sorted(FIXTURES.glob("*.json")):
        response = await client.post("/webhook", data=path.read_bytes())  # type: ignore[attr-defined]
        assert response.status == 200, path.name


@pytest.mark.parametrize(
    "buckets", ["10,30,60,120,300,600,900,1800,3600,7200,14400,28800,86400", ""]
)
async def test_fast_equals_library_in_both_formats(
    make_client: MakeClient, tmp_path: Path, buckets: str
) -> None:
    """Every fixture, catalogue escaping and both formats: identical output."""
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(CATALOGUE)
    client, _, exporter = await make_client(catalogue_path=catalogue, duration_buckets=buckets)
    await feed_every_fixture(client)
    for openmetrics in (False, True):
        fast = await fast_rendering(exporter, openmetrics=openmetrics)
        assert fast == library_rendering(exporter, openmetrics=openmetrics)
    assert r'flow_name="Quote \" back\\slash"' in fast
    assert ("aep_flow_run_duration_seconds_bucket" in fast) == bool(buckets)


async def test_changed_flows_are_rendered_again(make_client: MakeClient, tmp_path: Path) -> None:
    """A new delivery or a catalogue reload shows up in the next rendering."""
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(CATALOGUE)
    client, _, exporter = await make_client(catalogue_path=catalogue)
    await client.post("/webhook", data=body(legacy("e1", run_object(run_id="r1"))))
    first = await fast_rendering(exporter, openmetrics=False)
    await client.post("/webhook", data=body(legacy("e2", run_object(run_id="r2"))))
    second = await fast_rendering(exporter, openmetrics=False)
    assert first != second
    assert second == library_rendering(exporter, openmetrics=False)
    catalogue.write_text(CATALOGUE.replace("Quote", "Renamed"))
    exporter.reload_catalogue()
    third = await fast_rendering(exporter, openmetrics=True)
    assert 'flow_name="Renamed' in third
    assert third == library_rendering(exporter, openmetrics=True)


async def test_metrics_endpoint_is_self_metrics_then_flows(make_client: MakeClient) -> None:
    """/metrics holds the library's self-metrics section followed by the flow section."""
    client, _, exporter = await make_client()
    await feed_every_fixture(client)
    text = await (await client.get("/metrics")).text()
    flows = await fast_rendering(exporter, openmetrics=False)
    assert text.endswith(flows)
    assert text.startswith("# HELP aep_exporter_notifications_total")
    assert "process_cpu_seconds_total" in text
    om = await (
        await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    ).text()
    assert om.endswith(await fast_rendering(exporter, openmetrics=True) + "# EOF\n")
    assert om.count("# EOF") == 1


async def test_unchanged_flows_reuse_their_text() -> None:
    """Rendering twice without changes reuses the cached per-flow text objects."""
    exposition = FlowExposition((10.0, 60.0))
    key = FlowKey("prod", "flow-a")
    flows = {key: FlowState.new(key, 1.0, 3)}
    await drain(exposition, flows)
    cached = exposition._cache[key]
    await drain(exposition, flows, openmetrics=True)
    assert exposition._cache[key] is cached
    flows = {key: flows[key].copy()}
    await drain(exposition, flows)
    assert exposition._cache[key] is not cached


async def test_rendering_yields_to_other_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long rendering gives the event loop back between slices, so deliveries keep flowing."""
    monkeypatch.setattr("exporter.metrics.rendering.SLICE_SECONDS", 0.0)
    exposition = FlowExposition((10.0,))
    flows = {FlowKey("prod", f"flow-{i}"): FlowState.new(FlowKey("prod", f"flow-{i}"), 1.0, 2)
             for i in range(50)}  # fmt: skip
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await drain(exposition, flows)
    done = True
    await task
    assert ticks - before >= 50


async def test_changed_flows_are_rendered_ahead_of_the_scrape() -> None:
    """Flows noted as changed are rendered by the warmer; the next scrape reuses that text."""
    exposition = FlowExposition((10.0,))
    key = FlowKey("prod", "flow-a")
    flows = {key: FlowState.new(key, 1.0, 2)}
    exposition.note_changed([key])
    warmer = asyncio.create_task(exposition.warm(lambda: flows, Catalogue, interval=0))
    for _ in range(10):
        await asyncio.sleep(0)
        if key in exposition._cache:
            break
    warmer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await warmer
    warmed = exposition._cache[key]
    assert warmed.state is flows[key]
    await drain(exposition, flows)
    assert exposition._cache[key] is warmed
