"""Fast /metrics: the flow section rendered from per-flow text kept until that flow changes.

prometheus_client's encoders cost about 10 µs per series, seconds of CPU at 10 000 flows. Flow
records are replaced, never changed in place (exporter.recorder), so a flow's rendered lines stay
valid for as long as the same record (and catalogue entry) object is current. The output is the
library's, byte for byte, in both formats (tests/test_fast_exposition.py compares them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.catalogue import Catalogue, CatalogueEntry
from exporter.domain import FlowKey
from exporter.families import FLOW_FAMILIES
from exporter.metrics import FlowSample, bucket_labels, flow_keys, flow_samples
from exporter.state import FlowState

OPENMETRICS_EOF = "# EOF\n"


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _line(sample: FlowSample) -> str:
    name, labels, value = sample
    label_text = ",".join(f'{k}="{_escape_value(v)}"' for k, v in labels)
    return f"{name}{{{label_text}}} {floatToGoString(value)}\n"  # type: ignore[no-untyped-call]


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
    parts: list[str]  # one string per FLOW_FAMILIES entry


class FlowExposition:
    """Renders the flow families, re-rendering only flows whose record or entry changed."""

    def __init__(self, duration_buckets: tuple[float, ...]) -> None:
        self._les = bucket_labels(duration_buckets)
        self._skip = {i for i, f in enumerate(FLOW_FAMILIES) if f.type == "histogram"}
        if duration_buckets:
            self._skip.clear()
        self._cache: dict[FlowKey, _Rendered] = {}
        self._lock = threading.Lock()
        self._headers = {False: _headers(False), True: _headers(True)}

    def render(
        self, flows: Mapping[FlowKey, FlowState], catalogue: Catalogue, *, openmetrics: bool
    ) -> str:
        """The flow section in the text (0.0.4) or OpenMetrics format (without `# EOF`)."""
        with self._lock:
            keys = flow_keys(flows, catalogue)
            rendered = [self._flow(key, flows.get(key), catalogue.get(key)) for key in keys]
            if len(self._cache) > len(keys):
                current = set(keys)
                for key in [k for k in self._cache if k not in current]:
                    del self._cache[key]
        headers = self._headers[openmetrics]
        out = []
        for index, header in enumerate(headers):
            if index in self._skip:
                continue
            out.append(header)
            out.extend([flow.parts[index] for flow in rendered])
        return "".join(out)

    def _flow(
        self, key: FlowKey, state: FlowState | None, entry: CatalogueEntry | None
    ) -> _Rendered:
        cached = self._cache.get(key)
        if cached is not None and cached.state is state and cached.entry is entry:
            return cached
        samples = flow_samples(key, state, entry, self._les)
        rendered = _Rendered(state, entry, ["".join(map(_line, family)) for family in samples])
        self._cache[key] = rendered
        return rendered


def render_metrics(
    self_metrics: Collector,
    flows: FlowExposition,
    records: Mapping[FlowKey, FlowState],
    catalogue: Catalogue,
    encoder: Callable[[Collector], bytes],
    *,
    openmetrics: bool,
) -> bytes:
    """The whole exposition: self-metrics by the library's encoder, then the flow section."""
    head = encoder(self_metrics).decode()
    if openmetrics:
        head = head.removesuffix(OPENMETRICS_EOF)
    body = head + flows.render(records, catalogue, openmetrics=openmetrics)
    if openmetrics:
        body += OPENMETRICS_EOF
    return body.encode()
