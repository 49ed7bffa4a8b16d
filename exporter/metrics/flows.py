"""Metrics: the per-flow view over the state records, and the exporter's own self-metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter.catalogue import Catalogue, CatalogueEntry
from exporter.domain import ActivityStatus, AlertKind, DocumentKind, FlowKey, Outcome
from exporter.metrics.families import FLOW_FAMILIES
from exporter.recorder import Result
from exporter.records import COUNT_FIELDS, FlowState

REJECT_REASONS = (
    "bad_signature",
    "missing_signature",
    "recipient_mismatch",
    "recipient_missing",
    "key_unavailable",
    "body_too_large",
    "read_timeout",
    "invalid_json",
    "too_many_in_flight",
    "method_not_allowed",
    "store_unavailable",
)
COUNTED_KINDS = tuple(k.value for k in DocumentKind if k is not DocumentKind.VALIDATION)
COUNTED_RESULTS = tuple(r.value for r in Result if r is not Result.VALIDATION)
# Adobe gives up on a delivery after 10 s (protocol notes §1.5): buckets resolve that edge.
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0)
LAG_BUCKETS = (10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 172800, 259200)


class LatestTimestamp(Collector):
    """A gauge that only moves forward and is absent until it has a value."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
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
        self.notifications = Counter(
            "aep_exporter_notifications",
            "Notification documents by kind and outcome.",
            ("kind", "outcome"),
            registry=registry,
        )
        for kind in COUNTED_KINDS:
            for result in COUNTED_RESULTS:
                self.notifications.labels(kind, result)
        self.rejected = Counter(
            "aep_exporter_requests_rejected",
            "Webhook requests refused, by reason.",
            ("reason",),
            registry=registry,
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        self.recipient_missing = Counter(
            "aep_exporter_recipient_missing",
            "Documents accepted without a recipient id while client ids are configured.",
            registry=registry,
        )
        self.anomalies = Counter(
            "aep_exporter_anomalies",
            "Values treated as unknown, by field.",
            ("field",),
            registry=registry,
        )
        self.delivery_duration = Histogram(
            "aep_exporter_delivery_duration_seconds",
            "Webhook request handling time (Adobe times out at 10 s).",
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )
        self.delivery_retries = Counter(
            "aep_exporter_delivery_retries",
            "Deliveries that carried x-adobe-retry-count (Adobe retries).",
            registry=registry,
        )
        # Absent until a notification was recorded: never a 1970 timestamp.
        self.last_notification = LatestTimestamp(
            "aep_exporter_last_notification_timestamp_seconds",
            "Time the last notification was recorded.",
        )
        registry.register(self.last_notification)
        self.notification_lag = Histogram(
            "aep_exporter_notification_lag_seconds",
            "Receipt time minus run completion time, clamped at 0.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.tracked_flows = Gauge(
            "aep_exporter_tracked_flows", "Flows currently tracked.", registry=registry
        )
        self.flows_overflow = Counter(
            "aep_exporter_flows_overflow",
            'Notifications folded into flow_id="other" because the flow cap was reached.',
            registry=registry,
        )
        self.dead_letters_stored = Gauge(
            "aep_exporter_dead_letters_stored", "Dead letters stored now.", registry=registry
        )
        self.dead_letters = Counter(
            "aep_exporter_dead_letters", "Dead letters ever stored.", registry=registry
        )
        self.dead_letters_evicted = Counter(
            "aep_exporter_dead_letters_evicted",
            "Dead letters removed to keep the store within its bounds.",
            registry=registry,
        )
        self.key_fetches = Counter(
            "aep_exporter_public_key_fetches",
            "Public key fetches by result.",
            ("result",),
            registry=registry,
        )
        for result in ("ok", "error", "rejected_path"):
            self.key_fetches.labels(result)
        self.store_ready = Gauge(
            "aep_exporter_store_ready", "1 when the state store accepts writes.", registry=registry
        )
        self.build_info = Gauge(
            "aep_exporter_build_info",
            "Build information; always 1.",
            ("version", "verification"),
            registry=registry,
        )
        self.build_info.labels(__version__, "on" if verification_on else "off").set(1)
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


def _flow_name(state: FlowState | None, catalogue_name: str, flow_id: str) -> str:
    if catalogue_name:
        return catalogue_name
    if state is not None and state.flow_name:
        return state.flow_name
    return flow_id


# (sample name, labels sorted by name, value): the exposition formats sort labels by name too.
FlowSample = tuple[str, tuple[tuple[str, str], ...], float]
# Receives each sample of a flow: (family index, sample name, value, extra labels beyond
# sandbox and flow_id). The collector and the fast exposition each bring their own.
SampleSink = Callable[[int, str, float, tuple[tuple[str, str], ...]], None]
_INDEX = {family.name: index for index, family in enumerate(FLOW_FAMILIES)}


def bucket_labels(buckets: tuple[float, ...]) -> list[str]:
    """The `le` label values of the duration histogram, +Inf last."""
    return [str(floatToGoString(b)) for b in buckets] + ["+Inf"]  # type: ignore[no-untyped-call]


def emit_flow(
    state: FlowState | None,
    entry: CatalogueEntry | None,
    flow_id: str,
    les: list[str],
    add: SampleSink,
) -> None:
    """Every sample of one flow, in exposition order within each family, handed to `add`."""

    def sample(family: str, suffix: str, value: float, *extra: tuple[str, str]) -> None:
        add(_INDEX[family], family + suffix, float(value), extra)

    for outcome in Outcome:
        value = state.runs[outcome.value] if state else 0
        sample("aep_flow_runs", "_total", value, ("status", outcome.value))
    sample("aep_flow_runs_with_errors", "_total", state.runs_with_errors if state else 0)
    sample("aep_flow_runs_started", "_total", state.runs_started if state else 0)
    for name in COUNT_FIELDS:
        sample(f"aep_flow_{name}", "_total", state.totals[name] if state else 0)
    if state is not None:
        for code, value in state.error_codes.items():
            sample("aep_flow_run_errors", "_total", value, ("error_code", code))
        for activity, counts in state.activities.items():
            for status in ActivityStatus:
                sample(
                    "aep_flow_activity_runs",
                    "_total",
                    counts[status.value],
                    ("activity", activity),
                    ("status", status.value),
                )

    if len(les) > 1:
        histogram = "aep_flow_run_duration_seconds"
        observed = state.duration_buckets if state is not None else [0] * len(les)
        running = 0
        for le, bucket in zip(les, observed, strict=True):
            running += bucket
            sample(histogram, "_bucket", running, ("le", le))
        sample(histogram, "_count", running)
        sample(histogram, "_sum", state.duration_sum if state is not None else 0.0)

    if state is not None:
        _gauges(sample, state)
    sample(
        "aep_flow_info",
        "",
        1,
        ("flow_name", _flow_name(state, entry.name if entry else "", flow_id)),
        ("owner", entry.owner if entry else ""),
        ("source", entry.source if entry else ""),
        ("flow_severity", entry.severity if entry else ""),
        ("ims_org", (state.ims_org or "") if state is not None else ""),
    )
    if entry is not None and entry.expected_interval is not None:
        sample("aep_flow_expected_interval_seconds", "", entry.expected_interval)


def flow_samples(
    key: FlowKey,
    state: FlowState | None,
    entry: CatalogueEntry | None,
    les: list[str],
) -> list[list[FlowSample]]:
    """Every sample of one flow, one list per entry of FLOW_FAMILIES (empty when absent)."""
    out: list[list[FlowSample]] = [[] for _ in FLOW_FAMILIES]
    base = (("sandbox", key.sandbox), ("flow_id", key.flow_id))

    def add(index: int, name: str, value: float, extra: tuple[tuple[str, str], ...]) -> None:
        out[index].append((name, tuple(sorted(base + extra)), value))

    emit_flow(state, entry, key.flow_id, les, add)
    return out


def _gauges(sample: Callable[..., None], state: FlowState) -> None:
    for outcome in Outcome:
        completed = state.last_completed.get(outcome.value)
        if completed is not None:
            sample("aep_flow_last_run_timestamp_seconds", "", completed, ("status", outcome.value))
    newest = state.newest
    if newest is not None:
        sample("aep_flow_last_run_success", "", 1 if newest.success else 0)
        if newest.duration is not None:
            sample("aep_flow_last_run_duration_seconds", "", newest.duration)
        if newest.input_records is not None:
            sample("aep_flow_last_run_input_records", "", newest.input_records)
        if newest.output_records is not None:
            sample("aep_flow_last_run_output_records", "", newest.output_records)
    sample("aep_flow_runs_in_progress", "", len(state.open_runs))
    for kind in AlertKind:
        alert = state.alerts.get(kind.value)
        if alert is not None:
            sample("aep_flow_alert_active", "", alert[0], ("alert", kind.value))


def flow_keys(flows: Mapping[FlowKey, FlowState], catalogue: Catalogue) -> list[FlowKey]:
    """Every flow to expose: tracked ones and catalogued ones, in a stable order."""
    return sorted(set(flows) | set(catalogue.entries))


class FlowCollector(Collector):
    """The per-flow families as prometheus_client metrics, built from the state records.

    /metrics renders the same samples faster (exporter.metrics.rendering); this collector is the
    straightforward rendering it is tested against, and what registry look-ups see.
    """

    def __init__(
        self,
        flows: Callable[[], Mapping[FlowKey, FlowState]],
        catalogue: Callable[[], Catalogue],
        duration_buckets: tuple[float, ...],
    ) -> None:
        self._flows = flows
        self._catalogue = catalogue
        self._les = bucket_labels(duration_buckets)

    def describe(self) -> Iterator[Metric]:
        """Nothing: the collector is unchecked (its series change with the records)."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """Yield every flow family, in the contract's order."""
        states = dict(self._flows())
        catalogue = self._catalogue()
        metrics = [Metric(f.name, f.help, f.type) for f in FLOW_FAMILIES]
        for key in flow_keys(states, catalogue):
            per_family = flow_samples(key, states.get(key), catalogue.get(key), self._les)
            for metric, samples in zip(metrics, per_family, strict=True):
                for name, labels, value in samples:
                    metric.add_sample(name, dict(labels), value)
        for family, metric in zip(FLOW_FAMILIES, metrics, strict=True):
            if family.type == "histogram" and len(self._les) == 1:
                continue
            yield metric
