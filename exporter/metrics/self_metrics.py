"""The exporter's own metrics: prometheus_client objects built from the declared families."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.metrics import families as fam
from exporter.metrics.families import Family


def counter(registry: CollectorRegistry, family: Family) -> Counter:
    """A Counter for a declared family, with the children of its bounded label values."""
    metric = Counter(family.name, family.help, family.label_names, registry=registry)
    for values in family.children():
        metric.labels(*values)
    return metric


def gauge(registry: CollectorRegistry, family: Family) -> Gauge:
    """A Gauge for a declared family."""
    return Gauge(family.name, family.help, family.label_names, registry=registry)


def histogram(registry: CollectorRegistry, family: Family) -> Histogram:
    """A Histogram for a declared family, with its declared buckets."""
    return Histogram(
        family.name, family.help, family.label_names, buckets=family.buckets, registry=registry
    )


class LatestTimestamp(Collector):
    """A gauge that only moves forward and is absent until it has a value."""

    def __init__(self, family: Family) -> None:
        self.name, self.documentation = family.name, family.help
        self.value: float | None = None

    def set(self, value: float) -> None:
        """Remember `value` if it is newer than the current one."""
        if self.value is None or value > self.value:
            self.value = value

    def collect(self) -> Iterator[Metric]:
        """The gauge, once it has a value."""
        if self.value is not None:
            yield GaugeMetricFamily(self.name, self.documentation, value=self.value)


class SelfMetrics(Collector):
    """The exporter's own metrics, as ordinary prometheus_client objects on one registry.

    Also a collector of just these (plus the process collectors), for the fast /metrics path.
    """

    def __init__(self, registry: CollectorRegistry, *, verification_on: bool) -> None:
        self.notifications = counter(registry, fam.NOTIFICATIONS)
        self.rejected = counter(registry, fam.REQUESTS_REJECTED)
        self.recipient_missing = counter(registry, fam.RECIPIENT_MISSING)
        self.anomalies = counter(registry, fam.ANOMALIES)
        self.delivery_duration = histogram(registry, fam.DELIVERY_DURATION)
        self.delivery_retries = counter(registry, fam.DELIVERY_RETRIES)
        # Absent until a notification was recorded: never a 1970 timestamp.
        self.last_notification = LatestTimestamp(fam.LAST_NOTIFICATION)
        registry.register(self.last_notification)
        self.notification_lag = histogram(registry, fam.NOTIFICATION_LAG)
        self.tracked_flows = gauge(registry, fam.TRACKED_FLOWS)
        self.flows_overflow = counter(registry, fam.FLOWS_OVERFLOW)
        self.dead_letters_stored = gauge(registry, fam.DEAD_LETTERS_STORED)
        self.dead_letters = counter(registry, fam.DEAD_LETTERS)
        self.dead_letters_evicted = counter(registry, fam.DEAD_LETTERS_EVICTED)
        self.key_fetches = counter(registry, fam.KEY_FETCHES)
        self.store_ready = gauge(registry, fam.STORE_READY)
        self.leader = gauge(registry, fam.LEADER)
        self.build_info = gauge(registry, fam.BUILD_INFO)
        on, off = fam.BUILD_INFO.values("verification")
        self.build_info.labels(__version__, on if verification_on else off).set(1)
        own: list[Collector] = [
            m for m in vars(self).values() if isinstance(m, MetricWrapperBase | LatestTimestamp)
        ]
        # Standard process and runtime metrics, as every Python exporter has them.
        own.append(ProcessCollector(registry=registry))
        own.append(PlatformCollector(registry=registry))
        own.append(GCCollector(registry=registry))
        self._own = own

    def collect(self) -> Iterator[Metric]:
        """Every self-metric (not the flow families), in registration order."""
        for collector in self._own:
            yield from collector.collect()
