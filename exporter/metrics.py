"""Metrics: the per-flow view over the state records, and the exporter's own self-metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter.catalogue import Catalogue
from exporter.domain import ActivityStatus, AlertKind, DocumentKind, FlowKey, Outcome
from exporter.families import FLOW_FAMILIES
from exporter.recorder import Result
from exporter.state import COUNT_FIELDS, FlowState

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
# Adobe gives up on a delivery after 10 s (reference §1.5): buckets resolve that edge.
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0)
LAG_BUCKETS = (10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 172800, 259200)
_FAMILY = {f.name: f for f in FLOW_FAMILIES}
# Counter/Gauge/HistogramMetricFamily by name: their add_metric signatures differ.
_Families = dict[str, Any]


class SelfMetrics:
    """The exporter's own metrics, as ordinary prometheus_client objects on one registry."""

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
        self.last_notification = Gauge(
            "aep_exporter_last_notification_timestamp_seconds",
            "Time the last notification was recorded.",
            registry=registry,
        )
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
        build = Gauge(
            "aep_exporter_build_info",
            "Build information; always 1.",
            ("version", "verification"),
            registry=registry,
        )
        build.labels(__version__, "on" if verification_on else "off").set(1)


def _flow_name(state: FlowState | None, catalogue_name: str, flow_id: str) -> str:
    if catalogue_name:
        return catalogue_name
    if state is not None and state.flow_name:
        return state.flow_name
    return flow_id


class FlowCollector(Collector):
    """Renders the per-flow metrics from the state records (and the catalogue) at scrape time."""

    def __init__(
        self,
        flows: Callable[[], dict[FlowKey, FlowState]],
        catalogue: Callable[[], Catalogue],
        duration_buckets: tuple[float, ...],
    ) -> None:
        self._flows = flows
        self._catalogue = catalogue
        self._buckets = duration_buckets

    def describe(self) -> Iterator[Metric]:
        """Nothing: the collector is unchecked (its series change with the records)."""
        return iter(())

    def _family(self, name: str) -> Any:
        family = _FAMILY[name]
        labels = ["sandbox", "flow_id", *family.labels]
        if family.type == "counter":
            return CounterMetricFamily(family.name, family.help, labels=labels)
        if family.type == "histogram":
            return HistogramMetricFamily(family.name, family.help, labels=labels)
        return GaugeMetricFamily(family.name, family.help, labels=labels)

    def collect(self) -> Iterator[Metric]:
        """Yield every flow family, in the contract's order."""
        states = dict(self._flows())
        catalogue = self._catalogue()
        keys = sorted(set(states) | set(catalogue.entries))
        families: _Families = {f.name: self._family(f.name) for f in FLOW_FAMILIES}
        bucket_labels = [_le(b) for b in self._buckets] + ["+Inf"]
        for key in keys:
            state = states.get(key)
            entry = catalogue.get(key)
            flow = [key.sandbox, key.flow_id]
            _add_counters(families, flow, state)
            if self._buckets:
                buckets = state.duration_buckets if state is not None else []
                counts = buckets if buckets else [0] * len(bucket_labels)
                cumulative, running = [], 0
                for label, count in zip(bucket_labels, counts, strict=True):
                    running += count
                    cumulative.append((label, float(running)))
                total = state.duration_sum if state is not None else 0.0
                families["aep_flow_run_duration_seconds"].add_metric(flow, cumulative, total)
            if state is not None:
                _add_gauges(families, flow, state)
            families["aep_flow_info"].add_metric(
                [
                    *flow,
                    _flow_name(state, entry.name if entry else "", flow[1]),
                    entry.owner if entry else "",
                    entry.source if entry else "",
                    entry.severity if entry else "",
                    (state.ims_org or "") if state is not None else "",
                ],
                1.0,
            )
            if entry is not None and entry.expected_interval is not None:
                families["aep_flow_expected_interval_seconds"].add_metric(
                    flow, entry.expected_interval
                )
        for family in FLOW_FAMILIES:
            if family.type == "histogram" and not self._buckets:
                continue
            yield families[family.name]


def _le(bound: float) -> str:
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


def _add_counters(families: _Families, flow: list[str], state: FlowState | None) -> None:
    def add(name: str, value: float, *extra: str) -> None:
        families[name].add_metric([*flow, *extra], float(value))

    for outcome in Outcome:
        add("aep_flow_runs", state.runs[outcome.value] if state else 0, outcome.value)
    add("aep_flow_runs_with_errors", state.runs_with_errors if state else 0)
    add("aep_flow_runs_started", state.runs_started if state else 0)
    if state is not None:
        for code, count in state.error_codes.items():
            add("aep_flow_run_errors", count, code)
    for name in COUNT_FIELDS:
        add(f"aep_flow_{name}", state.totals[name] if state else 0)
    if state is not None:
        for activity, counts in state.activities.items():
            for status in ActivityStatus:
                add("aep_flow_activity_runs", counts[status.value], activity, status.value)


def _add_gauges(families: _Families, flow: list[str], state: FlowState) -> None:
    def add(name: str, value: float, *extra: str) -> None:
        families[name].add_metric([*flow, *extra], float(value))

    for outcome in Outcome:
        completed = state.last_completed.get(outcome.value)
        if completed is not None:
            add("aep_flow_last_run_timestamp_seconds", completed, outcome.value)
    newest = state.newest
    if newest is not None:
        add("aep_flow_last_run_success", 1 if newest.success else 0)
        if newest.duration is not None:
            add("aep_flow_last_run_duration_seconds", newest.duration)
        if newest.input_records is not None:
            add("aep_flow_last_run_input_records", newest.input_records)
        if newest.output_records is not None:
            add("aep_flow_last_run_output_records", newest.output_records)
    add("aep_flow_runs_in_progress", len(state.open_runs))
    for kind in AlertKind:
        alert = state.alerts.get(kind.value)
        if alert is not None:
            add("aep_flow_alert_active", alert[0], kind.value)
