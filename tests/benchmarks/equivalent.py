"""The exporter's series rebuilt as ordinary prometheus_client objects, to time generate_latest."""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.catalogue import Catalogue
from exporter.config import Settings
from exporter.domain import FlowKey
from exporter.metrics.flows import FlowCollector
from exporter.metrics.self_metrics import SelfMetrics
from exporter.records import FlowState
from exporter.stores.sqlite import SQLiteStore


def load_flows(state: Path) -> tuple[dict[FlowKey, FlowState], tuple[float, ...]]:
    """The flow records of a state file, read as the service reads them at start-up."""
    buckets = Settings(state_path=state).duration_buckets
    store = SQLiteStore(state, bucket_count=len(buckets) + 1)
    store.open()
    try:
        return store.load_flows(), buckets
    finally:
        store.close()


@contextlib.contextmanager
def without_created() -> Iterator[None]:
    """Ordinary counters without `_created` samples, which the per-flow view never has."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        enable_created_metrics()  # type: ignore[no-untyped-call]


def _label_names(family: Metric) -> list[str]:
    return [name for name in (family.samples[0].labels if family.samples else {}) if name != "le"]


def _add_histogram(registry: CollectorRegistry, family: Metric) -> None:
    names = _label_names(family)
    buckets = [s for s in family.samples if s.name.endswith("_bucket")]
    bounds: list[float] = []
    for sample in buckets:
        if sample.labels["le"] == "+Inf":
            break
        bounds.append(float(sample.labels["le"]))
    histogram = Histogram(
        family.name, family.documentation, names, buckets=bounds, registry=registry
    )
    below = 0.0
    for sample in buckets:
        child = histogram.labels(*(sample.labels[n] for n in names))
        infinite = sample.labels["le"] == "+Inf"
        # Observations at the bucket's bound give the same bucket counts (sums differ).
        value = bounds[-1] * 2 if infinite else float(sample.labels["le"])
        for _ in range(int(sample.value - below)):
            child.observe(value)
        below = 0.0 if infinite else sample.value


def ordinary_registry(
    flows: dict[FlowKey, FlowState], buckets: tuple[float, ...]
) -> CollectorRegistry:
    """A registry of Counter/Gauge/Histogram objects holding the series the exporter exposes."""
    registry = CollectorRegistry()
    SelfMetrics(registry, verification_on=True)
    for family in FlowCollector(lambda: flows, Catalogue, buckets).collect():
        if not family.samples:
            continue  # no series (e.g. no catalogue): the exporter shows only HELP and TYPE
        names = _label_names(family)
        if family.type == "histogram":
            _add_histogram(registry, family)
        elif family.type == "counter":
            counter = Counter(family.name, family.documentation, names, registry=registry)
            for sample in family.samples:
                counter.labels(*(sample.labels[n] for n in names)).inc(sample.value)
        else:
            gauge = Gauge(family.name, family.documentation, names, registry=registry)
            for sample in family.samples:
                gauge.labels(*(sample.labels[n] for n in names)).set(sample.value)
    return registry


def renderer(registry: CollectorRegistry, *, prometheus: bool) -> Callable[[], bytes]:
    """What the exporter's /metrics does for each kind of request, over this registry."""
    if prometheus:
        return lambda: gzip.compress(
            generate_openmetrics(registry),  # type: ignore[no-untyped-call]
            compresslevel=1,
        )
    return lambda: generate_latest(registry)
