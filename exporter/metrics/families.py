"""The metrics contract as data: every metric family the exporter exposes, with type and help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FLOW_LABELS = ("sandbox", "flow_id")

MetricType = Literal["counter", "gauge", "histogram", "info"]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its exposed name (counters without `_total`), type, help, extra labels."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()

    @property
    def sample_names(self) -> tuple[str, ...]:
        """Names of the samples this family exposes in the text format."""
        if self.type == "counter":
            return (self.name + "_total",)
        if self.type == "histogram":
            return (self.name + "_bucket", self.name + "_sum", self.name + "_count")
        return (self.name,)


# Per flow (labels sandbox, flow_id + extra), in exposition order. Names of counters carry no
# `_total` here: prometheus_client appends it, and the OpenMetrics family name omits it.
FLOW_FAMILIES: tuple[Family, ...] = (
    Family("aep_flow_runs", "counter", "Completed flow runs by outcome.", ("status",)),
    Family(
        "aep_flow_runs_with_errors",
        "counter",
        "Successful flow runs that still reported errors (partial ingestion).",
    ),
    Family("aep_flow_runs_started", "counter", "Flow run start notifications."),
    Family(
        "aep_flow_run_errors",
        "counter",
        "Flow runs that reported each error code.",
        ("error_code",),
    ),
    Family("aep_flow_input_records", "counter", "Records read by completed flow runs."),
    Family("aep_flow_output_records", "counter", "Records written by completed flow runs."),
    Family("aep_flow_failed_records", "counter", "Records that failed in completed flow runs."),
    Family("aep_flow_input_bytes", "counter", "Bytes read by completed flow runs."),
    Family("aep_flow_output_bytes", "counter", "Bytes written by completed flow runs."),
    Family("aep_flow_input_files", "counter", "Files read by completed flow runs."),
    Family("aep_flow_output_files", "counter", "Files written by completed flow runs."),
    Family(
        "aep_flow_activity_runs",
        "counter",
        "Activities of completed flow runs by activity and status.",
        ("activity", "status"),
    ),
    Family(
        "aep_flow_run_duration_seconds",
        "histogram",
        "Duration of successful flow runs (completedAtUTC - startedAtUTC).",
    ),
    Family(
        "aep_flow_last_run_timestamp_seconds",
        "gauge",
        "Completion time of the newest flow run with each outcome.",
        ("status",),
    ),
    Family(
        "aep_flow_last_run_success",
        "gauge",
        "1 if the newest completed flow run succeeded, else 0.",
    ),
    Family(
        "aep_flow_last_run_duration_seconds",
        "gauge",
        "Duration of the newest completed flow run, whatever its outcome.",
    ),
    Family(
        "aep_flow_last_run_input_records", "gauge", "Input records of the newest completed run."
    ),
    Family(
        "aep_flow_last_run_output_records", "gauge", "Output records of the newest completed run."
    ),
    Family("aep_flow_runs_in_progress", "gauge", "Flow runs started and not yet completed."),
    Family(
        "aep_flow_alert_active",
        "gauge",
        "Adobe-side alert state: 1 firing, 0 resolved.",
        ("alert",),
    ),
    Family(
        "aep_flow_info",
        "gauge",
        "Flow metadata; always 1.",
        ("flow_name", "owner", "source", "flow_severity", "ims_org"),
    ),
    Family(
        "aep_flow_expected_interval_seconds",
        "gauge",
        "Expected time between runs of a catalogued flow.",
    ),
)

# The exporter about itself (no flow labels), created as prometheus_client objects.
SELF_FAMILIES: tuple[Family, ...] = (
    Family(
        "aep_exporter_notifications",
        "counter",
        "Notification documents by kind and outcome.",
        ("kind", "outcome"),
    ),
    Family(
        "aep_exporter_requests_rejected",
        "counter",
        "Webhook requests refused, by reason.",
        ("reason",),
    ),
    Family(
        "aep_exporter_recipient_missing",
        "counter",
        "Documents accepted without a recipient id while client ids are configured.",
    ),
    Family("aep_exporter_anomalies", "counter", "Values treated as unknown, by field.", ("field",)),
    Family(
        "aep_exporter_delivery_duration_seconds",
        "histogram",
        "Webhook request handling time (Adobe times out at 10 s).",
    ),
    Family(
        "aep_exporter_delivery_retries",
        "counter",
        "Deliveries that carried x-adobe-retry-count (Adobe retries).",
    ),
    Family(
        "aep_exporter_last_notification_timestamp_seconds",
        "gauge",
        "Time the last notification was recorded.",
    ),
    Family(
        "aep_exporter_notification_lag_seconds",
        "histogram",
        "Receipt time minus run completion time, clamped at 0.",
    ),
    Family("aep_exporter_tracked_flows", "gauge", "Flows currently tracked."),
    Family(
        "aep_exporter_flows_overflow",
        "counter",
        'Notifications folded into flow_id="other" because the flow cap was reached.',
    ),
    Family("aep_exporter_dead_letters_stored", "gauge", "Dead letters stored now."),
    Family("aep_exporter_dead_letters", "counter", "Dead letters ever stored."),
    Family(
        "aep_exporter_dead_letters_evicted",
        "counter",
        "Dead letters removed to keep the store within its bounds.",
    ),
    Family(
        "aep_exporter_public_key_fetches",
        "counter",
        "Public key fetches by result.",
        ("result",),
    ),
    Family("aep_exporter_store_ready", "gauge", "1 when the state store accepts writes."),
    Family(
        "aep_exporter_build_info",
        "gauge",
        "Build information; always 1.",
        ("version", "verification"),
    ),
)


def exposed_sample_names() -> frozenset[str]:
    """Every sample name the exporter can expose (for rule and dashboard cross-checks)."""
    return frozenset(name for fam in FLOW_FAMILIES + SELF_FAMILIES for name in fam.sample_names)
