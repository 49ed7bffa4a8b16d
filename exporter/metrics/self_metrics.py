"""The exporter's own metrics: prometheus_client objects built from the declared families."""

from __future__ import annotations

import platform
from collections.abc import Collection, Iterator
from importlib import resources

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.adobe.client import AdobeApi, RequestResult
from exporter.domain import Source
from exporter.metrics import families as fam
from exporter.metrics.families import Family


def source_revision() -> str:
    """The commit the package was built from: exporter/REVISION, which the image build writes."""
    try:
        text = resources.files("exporter").joinpath("REVISION").read_text().strip()
    except FileNotFoundError:
        return "unknown"
    return text or "unknown"


def counter(
    registry: CollectorRegistry, family: Family, *, only: Collection[str] | None = None
) -> Counter:
    """A Counter for a declared family, with the children of its bounded label values (those
    whose first label value is in `only`, when given)."""
    metric = Counter(family.name, family.help, family.label_names, registry=registry)
    for values in family.children():
        if only is None or values[0] in only:
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


class OptionalGauge(Collector):
    """A gauge without labels that is absent until it has a value (never a fake 0)."""

    def __init__(self, family: Family) -> None:
        self.name, self.documentation = family.name, family.help
        self.value: float | None = None

    def set(self, value: float) -> None:
        """Expose `value` from now on."""
        self.value = value

    def collect(self) -> Iterator[Metric]:
        """The gauge, once it has a value."""
        if self.value is not None:
            yield GaugeMetricFamily(self.name, self.documentation, value=self.value)


class LatestTimestamp(OptionalGauge):
    """A gauge that only moves forward and is absent until it has a value."""

    def set(self, value: float) -> None:
        """Remember `value` if it is newer than the current one."""
        if self.value is None or value > self.value:
            self.value = value


class SelfMetrics(Collector):
    """The exporter's own metrics, as ordinary prometheus_client objects on one registry.

    Also a collector of just these (plus the process collectors), for the fast /metrics path.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        verification_on: bool,
        adobe_apis: Collection[AdobeApi] = (),
        sources: Collection[Source] = tuple(Source),
    ) -> None:
        # No `_created` series for these: a start time per child that nothing queries, doubling
        # the series count. The switch is process-wide; the flow families render their own.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        # Zeros only for the sources this configuration runs: a series at 0 for a source that
        # can never deliver would read as "nothing arrived" on a dashboard.
        self.notifications = counter(registry, fam.NOTIFICATIONS, only=sources)
        self._notification_children: dict[tuple[str, str, str], Counter] = {}
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
        verification = on if verification_on else off
        build = (__version__, verification, source_revision(), platform.python_version())
        self.build_info.labels(*build).set(1)
        if adobe_apis:
            self._adobe(registry, adobe_apis)
        own: list[Collector] = [
            m for m in vars(self).values() if isinstance(m, MetricWrapperBase | OptionalGauge)
        ]
        # Standard process and runtime metrics, as every Python exporter has them.
        own.append(ProcessCollector(registry=registry))
        own.append(PlatformCollector(registry=registry))
        own.append(GCCollector(registry=registry))
        self._own = own

    def notification(self, source: str, kind: str, outcome: str) -> Counter:
        """The aep_exporter_notifications_total child of these label values, looked up once:
        `labels()` takes a lock and checks its arguments, and every document is counted."""
        values = (source, kind, outcome)
        child = self._notification_children.get(values)
        if child is None:
            child = self._notification_children[values] = self.notifications.labels(*values)
        return child

    def _adobe(self, registry: CollectorRegistry, apis: Collection[AdobeApi]) -> None:
        # Registered only with the Adobe API features on, so without them nothing changes.
        self.adobe_requests = Counter(
            fam.ADOBE_REQUESTS.name,
            fam.ADOBE_REQUESTS.help,
            fam.ADOBE_REQUESTS.label_names,
            registry=registry,
        )
        # Zeros for the APIs this configuration calls, not for the ones it never will.
        for api in AdobeApi:
            if api in apis:
                for result in RequestResult:
                    self.adobe_requests.labels(api.value, result.value)
        self.poll_last_success = gauge(registry, fam.POLL_LAST_SUCCESS)
        if AdobeApi.JOURNAL in apis:
            self.journal_cursor_resets = counter(registry, fam.JOURNAL_CURSOR_RESETS)
        self.token_expiry = OptionalGauge(fam.TOKEN_EXPIRY)
        registry.register(self.token_expiry)
        self.registration_info = gauge(registry, fam.REGISTRATION_INFO)
        self.registration_healthy = gauge(registry, fam.REGISTRATION_HEALTHY)

    def count_adobe_request(self, api: AdobeApi, result: RequestResult) -> None:
        """The AdobeClient's on_request callback: one request counted by API and result."""
        self.adobe_requests.labels(api.value, result.value).inc()

    def collect(self) -> Iterator[Metric]:
        """Every self-metric (not the flow families), in registration order."""
        for collector in self._own:
            yield from collector.collect()
