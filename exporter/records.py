"""Per-flow state records: the one truth behind /metrics, and how each notification changes them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from exporter.domain import (
    ActivityStatus,
    FlowKey,
    Outcome,
)

COUNT_FIELDS = (
    "input_records",
    "output_records",
    "failed_records",
    "input_bytes",
    "output_bytes",
    "input_files",
    "output_files",
)


@dataclass(slots=True)
class NewestRun:
    """The newest completed run (greatest completion time; ties keep the first)."""

    completed_at: float
    success: bool
    duration: float | None
    input_records: int | None
    output_records: int | None


@dataclass(frozen=True, slots=True)
class FlowEnrichment:
    """What Flow Service says of a flow (protocol notes §11); kept with its record, so a restart
    shows the same names before Adobe answers again. Immutable: records share it."""

    name: str | None = None
    # The connection spec's name, e.g. "Amazon S3" (protocol notes §11.4).
    source: str | None = None
    # Flow Service's raw `state` (enabled, disabled, initializing, ...).
    state: str | None = None
    expected_interval: float | None = None

    @property
    def enabled(self) -> bool | None:
        """True for state `enabled`, False for any other state, None when none was given."""
        return None if self.state is None else self.state.lower() == "enabled"

    def to_json(self) -> dict[str, Any]:
        """The enrichment as JSON-compatible data."""
        return {
            "name": self.name,
            "source": self.source,
            "state": self.state,
            "expected_interval": self.expected_interval,
        }

    @classmethod
    def from_json(cls, data: Any) -> FlowEnrichment:
        """Rebuild it from stored data, every field checked (RecordError names a bad one)."""
        data = _object(data, "enrichment")
        interval = data.get("expected_interval")
        return cls(
            name=_text(data.get("name"), "enrichment.name"),
            source=_text(data.get("source"), "enrichment.source"),
            state=_text(data.get("state"), "enrichment.state"),
            expected_interval=None
            if interval is None
            else _number(interval, "enrichment.expected_interval"),
        )


@dataclass(slots=True)
class FlowState:
    """Everything the exporter knows about one flow; serialised as one row of the store."""

    key: FlowKey
    first_seen: float
    last_received: float
    runs: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    runs_with_errors: int = 0
    runs_started: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_FIELDS, 0))
    # activity -> status -> count; every status child exists once the activity is seen.
    activities: dict[str, dict[str, int]] = field(default_factory=dict)
    # Non-cumulative counts per configured bucket, plus one for +Inf.
    duration_buckets: list[int] = field(default_factory=list)
    duration_sum: float = 0.0
    last_completed: dict[str, float] = field(default_factory=dict)
    newest: NewestRun | None = None
    open_runs: dict[str, float] = field(default_factory=dict)  # run id -> received at
    alerts: dict[str, tuple[int, float]] = field(default_factory=dict)  # kind -> (value, doc time)
    flow_name: str | None = None
    ims_org: str | None = None
    # None until Flow Service answered for the flow.
    enrichment: FlowEnrichment | None = None

    @classmethod
    def new(cls, key: FlowKey, now: float, bucket_count: int) -> FlowState:
        """A flow seen for the first time now, its counters at 0."""
        return cls(key=key, first_seen=now, last_received=now, duration_buckets=[0] * bucket_count)

    @property
    def duration_count(self) -> int:
        """Observations in the duration histogram."""
        return sum(self.duration_buckets)

    def copy(self) -> FlowState:
        """A copy that can be changed without touching this record (cheaper than deepcopy)."""
        return FlowState(
            key=self.key,
            first_seen=self.first_seen,
            last_received=self.last_received,
            runs=dict(self.runs),
            runs_with_errors=self.runs_with_errors,
            runs_started=self.runs_started,
            error_codes=dict(self.error_codes),
            totals=dict(self.totals),
            activities={name: dict(counts) for name, counts in self.activities.items()},
            duration_buckets=list(self.duration_buckets),
            duration_sum=self.duration_sum,
            last_completed=dict(self.last_completed),
            newest=None if self.newest is None else NewestRun(**_newest_dict(self.newest)),
            open_runs=dict(self.open_runs),
            alerts=dict(self.alerts),
            flow_name=self.flow_name,
            ims_org=self.ims_org,
            enrichment=self.enrichment,
        )

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-compatible data for the store."""
        return {
            "first_seen": self.first_seen,
            "last_received": self.last_received,
            "runs": self.runs,
            "runs_with_errors": self.runs_with_errors,
            "runs_started": self.runs_started,
            "error_codes": self.error_codes,
            "totals": self.totals,
            "activities": self.activities,
            "duration_buckets": self.duration_buckets,
            "duration_sum": self.duration_sum,
            "last_completed": self.last_completed,
            "newest": None if self.newest is None else _newest_dict(self.newest),
            "open_runs": self.open_runs,
            "alerts": {kind: list(value) for kind, value in self.alerts.items()},
            "flow_name": self.flow_name,
            "ims_org": self.ims_org,
            "enrichment": None if self.enrichment is None else self.enrichment.to_json(),
        }

    @classmethod
    def from_json(cls, key: FlowKey, data: Any, bucket_count: int) -> FlowState:
        """Rebuild a record, every field checked (RecordError names the first bad one); a
        histogram stored with other buckets starts again empty."""
        data = _object(data, "record")
        buckets = [_count(n, "duration_buckets") for n in _list(data, "duration_buckets")]
        duration_sum = _number(data.get("duration_sum", 0.0), "duration_sum")
        if len(buckets) != bucket_count:
            buckets, duration_sum = [0] * bucket_count, 0.0
        runs = _counts(data.get("runs", {}), "runs")
        totals = _counts(data.get("totals", {}), "totals")
        activities = {
            str(name): _counts(counts, f"activities.{name}")
            for name, counts in _object(data.get("activities", {}), "activities").items()
        }
        newest = data.get("newest")
        # Records stored before enrichment existed have no such field.
        enrichment = data.get("enrichment")
        return cls(
            key=key,
            first_seen=_number(data.get("first_seen"), "first_seen"),
            last_received=_number(data.get("last_received"), "last_received"),
            runs={o.value: runs.get(o.value, 0) for o in Outcome},
            runs_with_errors=_count(data.get("runs_with_errors", 0), "runs_with_errors"),
            runs_started=_count(data.get("runs_started", 0), "runs_started"),
            error_codes=_counts(data.get("error_codes", {}), "error_codes"),
            totals={name: totals.get(name, 0) for name in COUNT_FIELDS},
            activities={
                name: {s.value: counts.get(s.value, 0) for s in ActivityStatus}
                for name, counts in activities.items()
            },
            duration_buckets=buckets,
            duration_sum=duration_sum,
            last_completed=_times(data.get("last_completed", {}), "last_completed"),
            newest=None if newest is None else _newest(newest),
            open_runs=_times(data.get("open_runs", {}), "open_runs"),
            alerts={
                str(kind): _alert(value, f"alerts.{kind}")
                for kind, value in _object(data.get("alerts", {}), "alerts").items()
            },
            flow_name=_text(data.get("flow_name"), "flow_name"),
            ims_org=_text(data.get("ims_org"), "ims_org"),
            enrichment=None if enrichment is None else FlowEnrichment.from_json(enrichment),
        )


class RecordError(ValueError):
    """A stored flow record that does not decode; the message names the field."""


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"{where} is not an object: {_shown(value)}")
    return value


def _list(data: dict[str, Any], name: str) -> list[Any]:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise RecordError(f"{name} is not a list: {_shown(value)}")
    return value


def _count(value: Any, where: str) -> int:
    # A count is a non-negative integer: a negative one would make a counter go backwards.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordError(f"{where} is not a count: {_shown(value)}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordError(f"{where} is not a finite number: {_shown(value)}")
    return float(value)


def _text(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RecordError(f"{where} is not text: {_shown(value)}")
    return value


def _counts(value: Any, where: str) -> dict[str, int]:
    return {str(k): _count(v, f"{where}.{k}") for k, v in _object(value, where).items()}


def _times(value: Any, where: str) -> dict[str, float]:
    return {str(k): _number(v, f"{where}.{k}") for k, v in _object(value, where).items()}


def _alert(value: Any, where: str) -> tuple[int, float]:
    if not isinstance(value, list) or len(value) != 2 or value[0] not in (0, 1):
        raise RecordError(f"{where} is not [0 or 1, time]: {_shown(value)}")
    return int(value[0]), _number(value[1], where)


def _newest(value: Any) -> NewestRun:
    data = _object(value, "newest")
    if set(data) != {"completed_at", "success", "duration", "input_records", "output_records"}:
        raise RecordError(f"newest has the wrong fields: {sorted(data)}")
    if not isinstance(data["success"], bool):
        raise RecordError(f"newest.success is not true or false: {_shown(data['success'])}")
    duration, inputs, outputs = (data[k] for k in ("duration", "input_records", "output_records"))
    return NewestRun(
        completed_at=_number(data["completed_at"], "newest.completed_at"),
        success=data["success"],
        duration=None if duration is None else _number(duration, "newest.duration"),
        input_records=None if inputs is None else _count(inputs, "newest.input_records"),
        output_records=None if outputs is None else _count(outputs, "newest.output_records"),
    )


def _shown(value: Any) -> str:
    """A stored value in an error message: short, on one line."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 40 else text[:37] + "..."


def _newest_dict(newest: NewestRun) -> dict[str, Any]:
    return {
        "completed_at": newest.completed_at,
        "success": newest.success,
        "duration": newest.duration,
        "input_records": newest.input_records,
        "output_records": newest.output_records,
    }
