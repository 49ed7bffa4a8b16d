"""The metrics contract as data: every metric family the exporter exposes, declared once."""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from exporter.adobe.client import AdobeApi, RequestResult
from exporter.domain import ActivityStatus, AlertKind, DocumentKind, Outcome, Source
from exporter.recorder import Result
from exporter.rejections import Rejection

FLOW_LABELS = ("sandbox", "flow_id")

MetricType = Literal["counter", "gauge", "histogram", "info"]


class KeyFetchResult(enum.StrEnum):
    """How a public key look-up ended: the `result` label, in exposition order."""

    OK = "ok"
    ERROR = "error"
    REJECTED_PATH = "rejected_path"


class PollTask(enum.StrEnum):
    """`task` label of the Adobe pollers' last-success gauge, in exposition order."""

    FLOWS = "flows"
    RECONCILE = "reconcile"
    JOURNAL = "journal"
    REGISTRATION = "registration"


def _values(members: Iterable[enum.StrEnum], *skip: enum.StrEnum) -> tuple[str, ...]:
    return tuple(member.value for member in members if member not in skip)


@dataclass(frozen=True, slots=True)
class Label:
    """A label name and, where bounded, every value it takes (in exposition order)."""

    name: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: exposed name (counters without `_total`), type, help, labels, buckets."""

    name: str
    type: MetricType
    help: str
    labels: tuple[Label, ...] = ()
    # Upper bounds of a histogram whose buckets are fixed (empty when configured or no histogram).
    buckets: tuple[float, ...] = ()
    # Where only some pairs of two bounded labels can happen: (first, second, the pairs).
    reachable: tuple[str, str, frozenset[tuple[str, str]]] | None = None

    @property
    def label_names(self) -> tuple[str, ...]:
        """The names of the extra labels, in declaration order."""
        return tuple(label.name for label in self.labels)

    @property
    def sample_names(self) -> tuple[str, ...]:
        """Names of the samples this family exposes in the text format."""
        if self.type == "counter":
            return (self.name + "_total",)
        if self.type == "histogram":
            return (self.name + "_bucket", self.name + "_sum", self.name + "_count")
        return (self.name,)

    def values(self, label: str) -> tuple[str, ...]:
        """The declared values of one label (empty when unbounded)."""
        return next(each.values for each in self.labels if each.name == label)

    def children(self) -> list[tuple[str, ...]]:
        """Label-value combinations a counter exists with from the start: every reachable one,
        if all its labels are bounded (a child that can never move would only be noise)."""
        bounded = all(label.values for label in self.labels)
        if self.type != "counter" or not self.labels or not bounded:
            return []
        combinations = itertools.product(*(label.values for label in self.labels))
        if self.reachable is None:
            return list(combinations)
        first, second, pairs = self.reachable
        i, j = self.label_names.index(first), self.label_names.index(second)
        return [values for values in combinations if (values[i], values[j]) in pairs]


OUTCOMES = _values(Outcome)

# Per flow (labels sandbox, flow_id + extra), in exposition order. Names of counters carry no
# `_total` here: prometheus_client appends it, and the OpenMetrics family name omits it.
RUNS = Family(
    "aep_flow_runs", "counter", "Completed flow runs by outcome.", (Label("status", OUTCOMES),)
)
RUNS_WITH_ERRORS = Family(
    "aep_flow_runs_with_errors",
    "counter",
    "Successful flow runs that still reported errors (partial ingestion).",
)
RUNS_STARTED = Family("aep_flow_runs_started", "counter", "Flow run start notifications.")
RUN_ERRORS = Family(
    "aep_flow_run_errors",
    "counter",
    "Flow runs that reported each error code.",
    (Label("error_code"),),
)
INPUT_RECORDS = Family("aep_flow_input_records", "counter", "Records read by completed flow runs.")
OUTPUT_RECORDS = Family(
    "aep_flow_output_records", "counter", "Records written by completed flow runs."
)
FAILED_RECORDS = Family(
    "aep_flow_failed_records", "counter", "Records that failed in completed flow runs."
)
INPUT_BYTES = Family("aep_flow_input_bytes", "counter", "Bytes read by completed flow runs.")
OUTPUT_BYTES = Family("aep_flow_output_bytes", "counter", "Bytes written by completed flow runs.")
INPUT_FILES = Family("aep_flow_input_files", "counter", "Files read by completed flow runs.")
OUTPUT_FILES = Family("aep_flow_output_files", "counter", "Files written by completed flow runs.")
ACTIVITY_RUNS = Family(
    "aep_flow_activity_runs",
    "counter",
    "Activities of completed flow runs by activity and status.",
    (Label("activity"), Label("status", _values(ActivityStatus))),
)
# Its buckets are configured (settings), not part of the contract.
RUN_DURATION = Family(
    "aep_flow_run_duration_seconds",
    "histogram",
    "Duration of successful flow runs (completedAtUTC - startedAtUTC).",
)
LAST_RUN_TIMESTAMP = Family(
    "aep_flow_last_run_timestamp_seconds",
    "gauge",
    "Completion time of the newest flow run with each outcome.",
    (Label("status", OUTCOMES),),
)
LAST_RUN_SUCCESS = Family(
    "aep_flow_last_run_success", "gauge", "1 if the newest completed flow run succeeded, else 0."
)
LAST_RUN_DURATION = Family(
    "aep_flow_last_run_duration_seconds",
    "gauge",
    "Duration of the newest completed flow run, whatever its outcome.",
)
LAST_RUN_INPUT_RECORDS = Family(
    "aep_flow_last_run_input_records", "gauge", "Input records of the newest completed run."
)
LAST_RUN_OUTPUT_RECORDS = Family(
    "aep_flow_last_run_output_records", "gauge", "Output records of the newest completed run."
)
RUNS_IN_PROGRESS = Family(
    "aep_flow_runs_in_progress", "gauge", "Flow runs started and not yet completed."
)
ALERT_ACTIVE = Family(
    "aep_flow_alert_active",
    "gauge",
    "Adobe-side alert state: 1 firing, 0 resolved.",
    (Label("alert", _values(AlertKind)),),
)
FLOW_INFO = Family(
    "aep_flow_info",
    "gauge",
    "Flow metadata; always 1.",
    tuple(Label(name) for name in ("flow_name", "owner", "source", "flow_severity", "ims_org")),
)
EXPECTED_INTERVAL = Family(
    "aep_flow_expected_interval_seconds",
    "gauge",
    "Expected time between runs: the catalogue's interval, else the Flow Service schedule.",
)
FLOW_ENABLED = Family(
    "aep_flow_enabled",
    "gauge",
    "Flow Service state of the flow: 1 enabled, 0 any other state.",
)
FLOW_FAMILIES: tuple[Family, ...] = (
    RUNS,
    RUNS_WITH_ERRORS,
    RUNS_STARTED,
    RUN_ERRORS,
    INPUT_RECORDS,
    OUTPUT_RECORDS,
    FAILED_RECORDS,
    INPUT_BYTES,
    OUTPUT_BYTES,
    INPUT_FILES,
    OUTPUT_FILES,
    ACTIVITY_RUNS,
    RUN_DURATION,
    LAST_RUN_TIMESTAMP,
    LAST_RUN_SUCCESS,
    LAST_RUN_DURATION,
    LAST_RUN_INPUT_RECORDS,
    LAST_RUN_OUTPUT_RECORDS,
    RUNS_IN_PROGRESS,
    ALERT_ACTIVE,
    FLOW_INFO,
    EXPECTED_INTERVAL,
    FLOW_ENABLED,
)

# What the recorder can answer for each kind of document (recorder.Recorder._apply): a flow
# document is recorded or a duplicate, another service's is ignored, an unknown one is stored.
NOTIFICATION_OUTCOMES = frozenset(
    (kind.value, outcome.value)
    for kinds, outcome in (
        ((DocumentKind.RUN, DocumentKind.START, DocumentKind.ALERT), Result.RECORDED),
        ((DocumentKind.OTHER_SERVICE,), Result.IGNORED),
        ((DocumentKind.UNKNOWN,), Result.DEAD_LETTERED),
        (tuple(DocumentKind), Result.DUPLICATE),
    )
    for kind in kinds
)

# The exporter about itself (no flow labels), created as prometheus_client objects in this
# order; counters exist with every combination of their bounded label values from the start.
NOTIFICATIONS = Family(
    "aep_exporter_notifications",
    "counter",
    "Notification documents by source, kind and outcome.",
    (
        Label("source", _values(Source)),
        Label("kind", _values(DocumentKind, DocumentKind.VALIDATION)),
        Label("outcome", _values(Result, Result.VALIDATION)),
    ),
    reachable=("kind", "outcome", NOTIFICATION_OUTCOMES),
)
REQUESTS_REJECTED = Family(
    "aep_exporter_requests_rejected",
    "counter",
    "Webhook requests (and journal documents) refused, by reason.",
    (Label("reason", _values(Rejection)),),
)
RECIPIENT_MISSING = Family(
    "aep_exporter_recipient_missing",
    "counter",
    "Documents accepted without a recipient id while client ids are configured.",
)
ANOMALIES = Family(
    "aep_exporter_anomalies", "counter", "Values treated as unknown, by field.", (Label("field"),)
)
# Adobe gives up on a delivery after 10 s (protocol notes §1.5): buckets resolve that edge.
DELIVERY_DURATION = Family(
    "aep_exporter_delivery_duration_seconds",
    "histogram",
    "Webhook request handling time (Adobe times out at 10 s).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0),
)
DELIVERY_RETRIES = Family(
    "aep_exporter_delivery_retries",
    "counter",
    "Deliveries that carried x-adobe-retry-count (Adobe retries).",
)
LAST_NOTIFICATION = Family(
    "aep_exporter_last_notification_timestamp_seconds",
    "gauge",
    "Time the last notification was recorded.",
)
NOTIFICATION_LAG = Family(
    "aep_exporter_notification_lag_seconds",
    "histogram",
    "Receipt time minus run completion time, clamped at 0.",
    buckets=(10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 172800, 259200),
)
TRACKED_FLOWS = Family("aep_exporter_tracked_flows", "gauge", "Flows currently tracked.")
FLOWS_OVERFLOW = Family(
    "aep_exporter_flows_overflow",
    "counter",
    'Notifications folded into flow_id="other" because the flow cap was reached.',
)
DEAD_LETTERS_STORED = Family(
    "aep_exporter_dead_letters_stored", "gauge", "Dead letters stored now."
)
DEAD_LETTERS = Family("aep_exporter_dead_letters", "counter", "Dead letters ever stored.")
DEAD_LETTERS_EVICTED = Family(
    "aep_exporter_dead_letters_evicted",
    "counter",
    "Dead letters removed to keep the store within its bounds.",
)
KEY_FETCHES = Family(
    "aep_exporter_public_key_fetches",
    "counter",
    "Public key fetches by result.",
    (Label("result", _values(KeyFetchResult)),),
)
STORE_READY = Family("aep_exporter_store_ready", "gauge", "1 when the state store accepts writes.")
LEADER = Family(
    "aep_exporter_leader",
    "gauge",
    "1 on the replica that runs the Adobe pollers now, else 0 (always 1 with SQLite).",
)
BUILD_INFO = Family(
    "aep_exporter_build_info",
    "gauge",
    "Build information; always 1.",
    (
        Label("version"),
        Label("verification", ("on", "off")),
        Label("revision"),
        Label("python_version"),
    ),
)
# Only with the Adobe API features configured (exporter.adobe.settings).
ADOBE_REQUESTS = Family(
    "aep_exporter_adobe_requests",
    "counter",
    "Requests to Adobe APIs by API and result.",
    (Label("api", _values(AdobeApi)), Label("result", _values(RequestResult))),
)
POLL_LAST_SUCCESS = Family(
    "aep_exporter_poll_last_success_timestamp_seconds",
    "gauge",
    "End of the last successful cycle of each Adobe poller.",
    (Label("task", _values(PollTask)),),
)
JOURNAL_CURSOR_RESETS = Family(
    "aep_exporter_journal_cursor_resets",
    "counter",
    "Expired journal positions (410) the journal poller recovered from.",
)
TOKEN_EXPIRY = Family(
    "aep_exporter_adobe_token_expiry_timestamp_seconds",
    "gauge",
    "Expiry time of the cached IMS token.",
)
REGISTRATION_INFO = Family(
    "aep_events_registration_info",
    "gauge",
    "Adobe's raw state of the I/O Events registration; always 1.",
    tuple(
        Label(name) for name in ("registration_id", "webhook_status", "enabled", "delivery_type")
    ),
)
REGISTRATION_HEALTHY = Family(
    "aep_events_registration_healthy",
    "gauge",
    "1 when the I/O Events registration is enabled and its webhook verified, else 0.",
    (Label("registration_id"),),
)
ADOBE_SELF_FAMILIES: tuple[Family, ...] = (
    ADOBE_REQUESTS,
    POLL_LAST_SUCCESS,
    JOURNAL_CURSOR_RESETS,
    TOKEN_EXPIRY,
    REGISTRATION_INFO,
    REGISTRATION_HEALTHY,
)
SELF_FAMILIES: tuple[Family, ...] = (
    NOTIFICATIONS,
    REQUESTS_REJECTED,
    RECIPIENT_MISSING,
    ANOMALIES,
    DELIVERY_DURATION,
    DELIVERY_RETRIES,
    LAST_NOTIFICATION,
    NOTIFICATION_LAG,
    TRACKED_FLOWS,
    FLOWS_OVERFLOW,
    DEAD_LETTERS_STORED,
    DEAD_LETTERS,
    DEAD_LETTERS_EVICTED,
    KEY_FETCHES,
    STORE_READY,
    LEADER,
    BUILD_INFO,
    *ADOBE_SELF_FAMILIES,
)


def exposed_sample_names() -> frozenset[str]:
    """Every sample name the exporter can expose (for rule and dashboard cross-checks)."""
    return frozenset(name for fam in FLOW_FAMILIES + SELF_FAMILIES for name in fam.sample_names)
