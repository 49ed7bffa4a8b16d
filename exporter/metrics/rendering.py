"""Fast /metrics: the flow section rendered from per-flow text kept until that flow changes.

prometheus_client's encoders cost about 10 µs per series, seconds of CPU at 10 000 flows. Flow
records are replaced, never changed in place (exporter.recorder), so a flow's rendered lines stay
valid for as long as the same record (and catalogue entry) object is current. The output is the
library's, byte for byte, in both formats (tests/test_fast_exposition.py compares them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.catalogue import Catalogue, CatalogueEntry
from exporter.domain import FlowKey
from exporter.metrics.families import FLOW_FAMILIES
from exporter.metrics.flows import bucket_labels, emit_flow, flow_keys, omitted_families
from exporter.records import FlowState

OPENMETRICS_EOF = b"# EOF\n"
# Longest stretch the flow rendering keeps the event loop before letting deliveries run.
SLICE_SECONDS = 0.004
# How often changed flows are rendered ahead of the next scrape.
WARM_INTERVAL_SECONDS = 1.0
# Background work takes shorter turns than a scrape, which someone is waiting for.
WARM_SLICE_SECONDS = 0.001
# At most this much of each interval goes to warming, so heavy ingest keeps its CPU.
WARM_BUDGET_SECONDS = 0.015


def _escape_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _value(value: float) -> str:
    # floatToGoString, without its function call for the common case (plain repr below 1e6).
    if -1e6 < value < 1e6:
        return repr(value)
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


class _LineSink:
    """Formats a flow's samples as exposition lines, as prometheus_client would (labels sorted
    by name, values escaped, floats in Go's notation), without building sample objects."""

    def __init__(self, key: FlowKey, lines: list[list[str]]) -> None:
        self._lines = lines
        self._flow_id = f'flow_id="{_escape_value(key.flow_id)}"'
        self._sandbox = f'sandbox="{_escape_value(key.sandbox)}"'
        self._base = f"{self._flow_id},{self._sandbox}"

    def __call__(
        self, index: int, name: str, value: float, extra: tuple[tuple[str, str], ...]
    ) -> None:
        if not extra:
            labels = self._base
        else:
            pairs = [("flow_id", self._flow_id), ("sandbox", self._sandbox)]
            pairs += [(k, f'{k}="{_escape_value(v)}"') for k, v in extra]
            pairs.sort()
            labels = ",".join([text for _, text in pairs])
        self._lines[index].append(f"{name}{{{labels}}} {_value(value)}\n")


def _headers(openmetrics: bool) -> list[str]:
    headers = []
    for family in FLOW_FAMILIES:
        if openmetrics:
            name = family.name
            help_text = _escape_value(family.help)
        else:
            name = family.name + "_total" if family.type == "counter" else family.name
            help_text = family.help.replace("\\", r"\\").replace("\n", r"\n")
        headers.append(f"# HELP {name} {help_text}\n# TYPE {name} {family.type}\n")
    return headers


@dataclass(slots=True)
class _Rendered:
    state: FlowState | None
    entry: CatalogueEntry | None
    parts: list[bytes]  # one per FLOW_FAMILIES entry


class FlowExposition:
    """Renders the flow families, re-rendering only flows whose record or entry changed.

    It runs on the event loop in slices of about SLICE_SECONDS between yields: rendering in a
    thread would hold the GIL for hundreds of milliseconds and stall deliveries just the same.
    """

    def __init__(self, duration_buckets: tuple[float, ...], *, enrichment: bool = False) -> None:
        self._les = bucket_labels(duration_buckets)
        omitted = omitted_families(duration_buckets, enrichment=enrichment)
        self._skip = {i for i, f in enumerate(FLOW_FAMILIES) if f in omitted}
        self._cache: dict[FlowKey, _Rendered] = {}
        self._changed: set[FlowKey] = set()
        self._keys: list[FlowKey] = []
        self._key_set: set[FlowKey] = set()
        self._headers = {
            False: [h.encode() for h in _headers(False)],
            True: [h.encode() for h in _headers(True)],
        }

    async def render(
        self, flows: Mapping[FlowKey, FlowState], catalogue: Catalogue, *, openmetrics: bool
    ) -> AsyncIterator[bytes]:
        """The flow section, text (0.0.4) or OpenMetrics (without `# EOF`), one chunk a family.

        Chunks are made as they are asked for, so only one family's text (a few MiB at 10 000
        flows) is held beside the cache at a time.
        """
        keys = self._current_keys(flows, catalogue)
        rendered = []
        deadline = time.perf_counter() + SLICE_SECONDS
        for key in keys:
            rendered.append(self._flow(key, flows.get(key), catalogue.get(key)))
            if time.perf_counter() > deadline:
                await asyncio.sleep(0)
                deadline = time.perf_counter() + SLICE_SECONDS
        for index, header in enumerate(self._headers[openmetrics]):
            if index not in self._skip:
                yield b"".join([header, *[flow.parts[index] for flow in rendered]])

    def note_changed(self, keys: Iterable[FlowKey]) -> None:
        """Flows whose records were replaced: `warm` renders them before the next scrape."""
        self._changed.update(keys)

    async def warm(
        self,
        flows: Callable[[], Mapping[FlowKey, FlowState]],
        catalogue: Callable[[], Catalogue],
        interval: float = WARM_INTERVAL_SECONDS,
    ) -> None:
        """Forever: every `interval`, render the flows changed since, within a CPU budget.

        Work comes in WARM_SLICE_SECONDS turns, at most WARM_BUDGET_SECONDS per interval (flows
        left over wait for the next interval, or the scrape renders them). A scrape then finds
        almost every flow rendered instead of rendering, in one burst, all the flows the last
        seconds of deliveries changed; a flow changed many times in an interval renders once.
        """
        while True:
            await asyncio.sleep(interval)
            changed, self._changed = list(self._changed), set()
            records, entries = flows(), catalogue()
            started = time.perf_counter()
            deadline = started + WARM_SLICE_SECONDS
            for index, key in enumerate(changed):
                if time.perf_counter() - started > WARM_BUDGET_SECONDS:
                    # Under heavy ingest the scrape renders the rest, as it would anyway.
                    self._changed.update(changed[index:])
                    break
                state = records.get(key)
                if state is not None:
                    self._flow(key, state, entries.get(key))
                if time.perf_counter() > deadline:
                    await asyncio.sleep(0)
                    deadline = time.perf_counter() + WARM_SLICE_SECONDS

    def _current_keys(
        self, flows: Mapping[FlowKey, FlowState], catalogue: Catalogue
    ) -> list[FlowKey]:
        """Flow keys in exposition order; sorted again only when the set of flows changed."""
        current = set(flows)
        current.update(catalogue.entries)
        if current != self._key_set:
            self._key_set, self._keys = current, flow_keys(flows, catalogue)
            for key in [k for k in self._cache if k not in current]:
                del self._cache[key]
        return self._keys

    def _flow(
        self, key: FlowKey, state: FlowState | None, entry: CatalogueEntry | None
    ) -> _Rendered:
        cached = self._cache.get(key)
        if cached is not None and cached.state is state and cached.entry is entry:
            return cached
        lines: list[list[str]] = [[] for _ in FLOW_FAMILIES]
        emit_flow(state, entry, key.flow_id, self._les, _LineSink(key, lines))
        rendered = _Rendered(state, entry, ["".join(family).encode() for family in lines])
        self._cache[key] = rendered
        return rendered


async def render_metrics(
    self_metrics: Collector,
    flows: FlowExposition,
    records: Mapping[FlowKey, FlowState],
    catalogue: Catalogue,
    encoder: Callable[[Collector], bytes],
    *,
    openmetrics: bool,
) -> AsyncIterator[bytes]:
    """The whole exposition as chunks to send in order: self-metrics by the library's encoder,
    then the flow section (and `# EOF` for OpenMetrics)."""
    head = encoder(self_metrics)
    yield head.removesuffix(OPENMETRICS_EOF) if openmetrics else head
    async for chunk in flows.render(records, catalogue, openmetrics=openmetrics):
        yield chunk
    if openmetrics:
        yield OPENMETRICS_EOF
