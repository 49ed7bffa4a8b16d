"""How each notification changes a flow's record: runs, starts, alerts, and the label caps."""

from __future__ import annotations

import bisect
import math
from typing import Any

from exporter.domain import (
    OTHER,
    ActivityStatus,
    FlowAlert,
    FlowEvent,
    FlowRun,
    FlowStart,
    Outcome,
)
from exporter.records import COUNT_FIELDS, FlowState, NewestRun

# Every status child an activity has from its first run on.
_ACTIVITY_STATUSES = tuple(status.value for status in ActivityStatus)
# Bounded label values per flow (protocol notes §18.5, §18.6).
MAX_ERROR_CODES_PER_FLOW = 50
MAX_ACTIVITIES_PER_FLOW = 20


def _within_cap(names: list[str], known: dict[str, Any], cap: int) -> dict[str, str]:
    """Each distinct label of one run: itself if the flow knows it or has room, else "other".

    Room is counted with the labels this same run adds, so one run never takes the flow past its
    cap (protocol notes §18.5); "other" never takes a place of its own.
    """
    taken = sum(1 for name in known if name != OTHER)
    labels: dict[str, str] = {}
    for name in names:
        if name in labels:
            continue
        if name in known or name == OTHER:
            labels[name] = name
        elif taken < cap:
            labels[name] = name
            taken += 1
        else:
            labels[name] = OTHER
    return labels


def _remember_metadata(state: FlowState, flow_name: str | None, ims_org: str | None) -> None:
    # The newest payload (by receipt) wins for names (protocol notes §18.18).
    if flow_name:
        state.flow_name = flow_name
    if ims_org:
        state.ims_org = ims_org


def apply_run(
    state: FlowState, run: FlowRun, received_at: float, buckets: tuple[float, ...]
) -> None:
    """Count a completed run into its flow's record."""
    state.last_received = max(state.last_received, received_at)
    _remember_metadata(state, run.flow_name, run.ims_org)
    state.runs[run.outcome.value] += 1
    if run.outcome is Outcome.SUCCESS and run.errors:
        state.runs_with_errors += 1

    codes = _within_cap([e.code for e in run.errors], state.error_codes, MAX_ERROR_CODES_PER_FLOW)
    for code in dict.fromkeys(codes.values()):  # each code once per run, "other" included
        state.error_codes[code] = state.error_codes.get(code, 0) + 1

    for name in COUNT_FIELDS:
        value = getattr(run, name)
        if value is not None:
            state.totals[name] += value

    names = [activity.activity for activity in run.activities]
    labels = _within_cap(names, state.activities, MAX_ACTIVITIES_PER_FLOW)
    folded: set[ActivityStatus] = set()  # statuses "other" counted this run: once each
    for activity in run.activities:
        label = labels[activity.activity]
        if label == OTHER and activity.activity != OTHER:
            if activity.status in folded:
                continue
            folded.add(activity.status)
        counts = state.activities.get(label)
        if counts is None:
            counts = state.activities[label] = dict.fromkeys(_ACTIVITY_STATUSES, 0)
        counts[activity.status.value] += 1

    if run.outcome is Outcome.SUCCESS and run.duration_seconds is not None and buckets:
        # Buckets are upper bounds (le): a value equal to a bound belongs to that bucket.
        state.duration_buckets[bisect.bisect_left(buckets, run.duration_seconds)] += 1
        state.duration_sum += run.duration_seconds

    completed = run.completed_at if run.completed_at is not None else received_at
    previous = state.last_completed.get(run.outcome.value)
    if previous is None or completed > previous:
        state.last_completed[run.outcome.value] = completed
    if state.newest is None or completed > state.newest.completed_at:
        state.newest = NewestRun(
            completed_at=completed,
            success=run.outcome is Outcome.SUCCESS,
            duration=run.duration_seconds,
            input_records=run.input_records,
            output_records=run.output_records,
        )
    if run.run_id is not None:
        state.open_runs.pop(run.run_id, None)


def apply_start(
    state: FlowState, start: FlowStart, received_at: float, *, already_completed: bool
) -> None:
    """Count a start; the run stays open unless its completion already arrived."""
    state.last_received = max(state.last_received, received_at)
    _remember_metadata(state, start.flow_name, start.ims_org)
    state.runs_started += 1
    if start.run_id is not None and not already_completed:
        state.open_runs[start.run_id] = received_at


def apply_alert(state: FlowState, alert: FlowAlert, received_at: float) -> None:
    """Set an Adobe-side alert's state unless a newer document already set it."""
    state.last_received = max(state.last_received, received_at)
    _remember_metadata(state, alert.flow_name, alert.ims_org)
    at = alert.at if alert.at is not None else received_at
    current = state.alerts.get(alert.alert.value)
    if current is not None and at < current[1]:
        return
    state.alerts[alert.alert.value] = (1 if alert.firing else 0, at)


def apply_event(
    state: FlowState,
    event: FlowEvent,
    received_at: float,
    buckets: tuple[float, ...],
    *,
    run_completed: bool = False,
) -> None:
    """Change a flow's record by one event; `run_completed`: a start's run already ended."""
    if isinstance(event, FlowRun):
        apply_run(state, event, received_at, buckets)
    elif isinstance(event, FlowStart):
        apply_start(state, event, received_at, already_completed=run_completed)
    else:
        apply_alert(state, event, received_at)


def drop_stale_open_runs(state: FlowState, oldest: float) -> bool:
    """Forget open runs received before `oldest`; True if anything changed."""
    stale = [run_id for run_id, at in state.open_runs.items() if at < oldest]
    for run_id in stale:
        del state.open_runs[run_id]
    return bool(stale)


def lag_seconds(run: FlowRun, received_at: float) -> float | None:
    """Receipt minus run completion, clamped at 0 (None when the run had no completion time)."""
    if run.completed_at is None or not math.isfinite(run.completed_at):
        return None
    return max(0.0, received_at - run.completed_at)
