"""Normalize a run object or an alert document into a flow event (protocol notes §18)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter import identity
from exporter.domain import (
    OTHER,
    ActivityResult,
    ActivityStatus,
    AlertKind,
    Event,
    FlowAlert,
    FlowKey,
    FlowRun,
    FlowStart,
    Outcome,
    RunError,
    Unrecognized,
)
from exporter.normalize.values import (
    FLOW_ID_LIMIT,
    ID_LIMIT,
    NAME_LIMIT,
    clean_text,
    count_field,
    identifier,
    label,
    message_text,
    named_text,
    section,
    time_field,
)
from exporter.payloads.shapes import AlertStatus

UNKNOWN_SANDBOX = "unknown"

_STARTED = "started"

_STATE_BY_STATUS: Mapping[str, str] = {
    "success": Outcome.SUCCESS,
    "failed": Outcome.FAILED,
    "failure": Outcome.FAILED,
    "inprogress": _STARTED,
}

# Outcome from the event code when the run has no usable status (protocol notes §18.1);
# `source_flow_run_info` is absent on purpose: it announces both starts and successes.
# `sources_flow_run_started` is seen only in third-party code (protocol notes §4.3).
_STATE_BY_CODE: Mapping[str, str] = {
    "sources_flow_run_success": Outcome.SUCCESS,
    "sources_flow_run_failed": Outcome.FAILED,
    "sources_flow_run_failure": Outcome.FAILED,
    "source_flow_run_error": Outcome.FAILED,
    "sources_flow_run_started": _STARTED,
}

SOURCE_CODES = frozenset({*_STATE_BY_CODE, "source_flow_run_info"})

_ACTIVITY_STATUS: Mapping[str, ActivityStatus] = {
    "success": ActivityStatus.SUCCESS,
    "failed": ActivityStatus.FAILED,
    "failure": ActivityStatus.FAILED,
}


@dataclass(slots=True)
class Classified:
    """What a document is, before the envelope-level keys are added."""

    event: Event
    anomalies: list[str]
    domain_key: str | None = None


def unknown(reason: str) -> Classified:
    return Classified(Unrecognized(reason), [])


def run_document(run: dict[str, Any], code: str | None, latest: float) -> Classified:
    """Normalize a Flow Service run object (§4.4) into a FlowRun or a FlowStart."""
    anomalies: list[str] = []
    flow = _flow_key(run.get("flowId"), run.get("sandboxName"), anomalies)
    if isinstance(flow, str):
        return unknown(f"run {flow}")
    metrics = section(run, "metrics", anomalies)
    status_summary = section(metrics, "statusSummary", anomalies)
    status = status_summary.get("status")
    state = _STATE_BY_STATUS.get(status.strip().lower()) if isinstance(status, str) else None
    if state is None and code is not None:
        state = _STATE_BY_CODE.get(code.lower())
    if state is None:
        return unknown("run without outcome")
    raw_id = run.get("id")
    run_id = identifier(raw_id, ID_LIMIT)
    if run_id is None and raw_id is not None:
        anomalies.append("id")
    flow_name = named_text(run.get("flowName"), "flowName", anomalies)
    ims_org = named_text(run.get("imsOrgId"), "imsOrgId", anomalies)
    durations = section(metrics, "durationSummary", anomalies)
    started_at = time_field(durations.get("startedAtUTC"), "startedAtUTC", anomalies, latest)
    if state == _STARTED:
        start = FlowStart(flow, run_id, started_at, flow_name, ims_org)
        key = identity.start_key(run_id) if run_id else None
        return Classified(start, anomalies, key)

    outcome = Outcome(state)
    completed = time_field(durations.get("completedAtUTC"), "completedAtUTC", anomalies, latest)
    duration = None
    if started_at is not None and completed is not None:
        if completed >= started_at:
            # Microseconds are the finest resolution any Adobe time carries; rounding drops the
            # float noise of subtracting two epoch values (27.371, not 27.371000051498413).
            duration = round(completed - started_at, 6)
        else:
            # The pair is inconsistent: completion is treated as unknown, like any anomaly.
            anomalies.append("completedAtUTC")
            completed = None
    if completed is None:
        # Only run-level fields: activities' times are nonsense in the docs (protocol notes §4.4).
        completed = time_field(run.get("updatedAt"), "updatedAt", anomalies, latest)
    sizes = section(metrics, "sizeSummary", anomalies)
    records = section(metrics, "recordSummary", anomalies)
    files = section(metrics, "fileSummary", anomalies)
    activities = _activity_objects(run.get("activities"), anomalies)
    flow_run = FlowRun(
        flow=flow,
        run_id=run_id,
        outcome=outcome,
        completed_at=completed,
        started_at=started_at,
        duration_seconds=duration,
        input_records=count_field(records, "inputRecordCount", anomalies),
        output_records=count_field(records, "outputRecordCount", anomalies),
        failed_records=count_field(records, "failedRecordCount", anomalies),
        input_bytes=count_field(sizes, "inputBytes", anomalies),
        output_bytes=count_field(sizes, "outputBytes", anomalies),
        input_files=count_field(files, "inputFileCount", anomalies),
        output_files=count_field(files, "outputFileCount", anomalies),
        errors=_errors(status_summary, records, activities, anomalies),
        activities=tuple(_activity(activity) for activity in activities),
        flow_name=flow_name,
        ims_org=ims_org,
    )
    key = identity.run_key(run_id, outcome) if run_id else None
    return Classified(flow_run, anomalies, key)


def alert_document(alert: dict[str, Any], status: AlertStatus, latest: float) -> Classified:
    """Normalize an Adobe alert document (delay, error rate) whose status is `status`."""
    anomalies: list[str] = []
    flow = _flow_key(alert.get("flowId"), alert.get("sandboxName"), anomalies)
    if isinstance(flow, str):
        return unknown(f"alert {flow}")
    name = clean_text(alert.get("name"), NAME_LIMIT) or ""
    lowered = name.lower()
    if "delay" in lowered:
        kind = AlertKind.DELAY
    elif "error_rate" in lowered:
        kind = AlertKind.ERROR_RATE
    else:
        kind = AlertKind.OTHER
    firing = status == "FIRING"
    # The document's own time orders alert states (protocol notes §18.9).
    if firing:
        at = time_field(alert.get("createdAt"), "createdAt", anomalies, latest)
    else:
        at = time_field(alert.get("resolvedAt"), "resolvedAt", anomalies, latest)
    event = FlowAlert(
        flow=flow,
        alert=kind,
        firing=firing,
        name=name,
        at=at,
        flow_name=named_text(alert.get("flowName"), "flowName", anomalies),
        ims_org=named_text(alert.get("imsOrgId"), "imsOrgId", anomalies),
    )
    key = identity.alert_key(flow, kind, status, at)
    return Classified(event, anomalies, key)


def _flow_key(flow_id: Any, sandbox_name: Any, anomalies: list[str]) -> FlowKey | str:
    """Return the flow key, or why there is none ("without flowId", "with invalid flowId")."""
    if flow_id is None:
        return "without flowId"
    valid_id = identifier(flow_id, FLOW_ID_LIMIT)
    if valid_id is None:
        return "with invalid flowId"
    sandbox = identifier(sandbox_name, ID_LIMIT)
    if sandbox is None:
        if sandbox_name is not None:
            anomalies.append("sandboxName")
        sandbox = UNKNOWN_SANDBOX
    return FlowKey(sandbox, valid_id)


def _activity_objects(value: Any, anomalies: list[str]) -> list[dict[str, Any]]:
    """Return the activities that are objects; anything else is an anomaly."""
    if value is None:
        return []
    if not isinstance(value, list):
        anomalies.append("activities")
        return []
    activities = [activity for activity in value if isinstance(activity, dict)]
    if len(activities) != len(value):
        anomalies.append("activities")
    return activities


def _activity(activity: dict[str, Any]) -> ActivityResult:
    """Label (`id`, else `name`) and status of one activity."""
    name = activity.get("id")
    if not isinstance(name, str) or not name.strip():
        name = activity.get("name")
    status_summary = activity.get("statusSummary")
    status = status_summary.get("status") if isinstance(status_summary, dict) else None
    result = _ACTIVITY_STATUS.get(status.strip().lower()) if isinstance(status, str) else None
    return ActivityResult(label(name), result or ActivityStatus.OTHER)


def _errors(
    status_summary: dict[str, Any],
    records: dict[str, Any],
    activities: list[dict[str, Any]],
    anomalies: list[str],
) -> tuple[RunError, ...]:
    """Each distinct error code once, first seen first, from every place Adobe puts them (§4.5)."""
    lists: list[tuple[Any, str | None]] = [
        (status_summary.get("errors"), "errors"),
        (records.get("failedInfo"), "failedInfo"),
    ]
    for activity in activities:
        summary = activity.get("statusSummary")
        summary = summary if isinstance(summary, dict) else {}
        extensions = summary.get("extensions")
        activity_records = activity.get("recordSummary")
        lists.append((summary.get("errors"), None))
        lists.append((extensions.get("errors") if isinstance(extensions, dict) else None, None))
        if isinstance(activity_records, dict):
            lists.append((activity_records.get("failedInfo"), None))
    found: dict[str, RunError] = {}
    for entries, field_name in lists:
        if entries is None:
            continue
        if not isinstance(entries, list):
            # Only run-level structure counts as an anomaly (activities are Adobe's detail).
            if field_name is not None:
                anomalies.append(field_name)
            continue
        for entry in entries:
            error = _error(entry)
            found.setdefault(error.code, error)
    return tuple(found.values())


def _error(entry: Any) -> RunError:
    """One error entry: a validated code (else "other") and its message for logs."""
    if not isinstance(entry, dict):
        return RunError(OTHER, message_text(entry))
    code = entry.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)  # some codes are numeric (133, 2200): Adobe quotes them, tolerate both
    return RunError(label(code), message_text(entry.get("message")))
