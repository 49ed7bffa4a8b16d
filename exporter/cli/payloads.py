"""`check-payload`: the normalized form of payload files and the metric changes each would cause."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporter.catalogue import Catalogue
from exporter.changes import apply_event
from exporter.cli.options import settings_from_args
from exporter.domain import (
    ActivityResult,
    Document,
    FlowAlert,
    FlowKey,
    FlowRun,
    FlowStart,
    RunError,
    Unrecognized,
)
from exporter.metrics.flows import FlowCollector
from exporter.normalize import normalize_body
from exporter.payloads.decode import PayloadError
from exporter.records import FlowState


def metric_changes(doc: Document, received_at: float, buckets: tuple[float, ...]) -> list[str]:
    """The flow samples one document would change on a fresh flow, as exposition lines."""
    event = doc.event
    if not isinstance(event, FlowRun | FlowStart | FlowAlert):
        return []
    before = FlowState.new(event.flow, received_at, len(buckets) + 1)
    after = before.copy()
    apply_event(after, event, received_at, buckets)

    def samples(state: FlowState) -> dict[str, float]:
        collector = FlowCollector(lambda: {event.flow: state}, Catalogue, buckets)
        out = {}
        for family in collector.collect():
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
                out[f"{sample.name}{{{labels}}}"] = sample.value
        return out

    old, new = samples(before), samples(after)
    changes = []
    for name, value in new.items():
        if name not in old:
            changes.append(f"{name} = {_number(value)}")
        elif old[name] != value:
            delta = value - old[name]
            changes.append(f"{name} {'+' if delta >= 0 else '-'}{_number(abs(delta))}")
    return changes


def _number(value: float) -> str:
    """A value at full precision: integers without a fraction, others as Python writes them."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _moment(seconds: float) -> str:
    """An epoch time as ISO-8601 UTC with milliseconds, and the exact epoch seconds."""
    when = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return f"{when.replace('+00:00', 'Z')} ({_number(seconds)})"


def _field_text(name: str, value: Any) -> str:
    """One normalized field as a person reads it."""
    if isinstance(value, FlowKey):
        return f"{value.sandbox} / {value.flow_id}"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and (name == "at" or name.endswith("_at")):
        return _moment(value)
    if isinstance(value, int | float):
        return _number(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, tuple):
        return "; ".join(_item_text(item) for item in value)
    return str(value)


def _item_text(item: Any) -> str:
    if isinstance(item, RunError):
        return f"{item.code} ({item.message})" if item.message else item.code
    if isinstance(item, ActivityResult):
        return f"{item.activity} {item.status.value}"
    return str(item)


def _document_json(doc: Document) -> dict[str, Any]:
    event = dataclasses.asdict(doc.event)
    return {
        "kind": doc.kind.value,
        "type": type(doc.event).__name__,
        "event": event,
        "dedup_keys": list(doc.dedup_keys),
        "anomalies": list(doc.anomalies),
        "recipient": doc.recipient,
        "event_id": doc.event_id,
    }


def _print_text(source: str, index: int, doc: Document, changes: list[str]) -> None:
    print(f"{source} #{index}: {doc.kind.value}")
    rows = [
        (name.replace("_", " "), _field_text(name, getattr(doc.event, name)))
        for name in (field.name for field in dataclasses.fields(doc.event))
        if getattr(doc.event, name) not in (None, (), "")
    ]
    rows.append(("de-duplication keys", ", ".join(doc.dedup_keys)))
    if doc.recipient:
        rows.append(("recipient", doc.recipient))
    if doc.anomalies:
        rows.append(("anomalies", ", ".join(doc.anomalies)))
    width = max(len(label) for label, _ in rows) + 1
    for label, text in rows:
        print(f"  {label + ':':<{width}} {text}")
    if changes:
        print("  metric changes on a new flow:")
    for change in changes:
        print(f"    {change}")


def cmd_check_payload(args: argparse.Namespace) -> int:
    """Print each document's normalized form and the metric changes it would cause."""
    settings = settings_from_args(args)
    received_at = time.time()
    failed = False
    for name in args.files:
        try:
            body = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            print(f"{name}: cannot read: {exc.strerror}", file=sys.stderr)
            failed = True
            continue
        try:
            documents = normalize_body(
                body, received_at=received_at, max_depth=settings.max_json_depth
            )
        except PayloadError as exc:
            print(f"{name}: not usable JSON: {exc.reason}", file=sys.stderr)
            failed = True
            continue
        for index, doc in enumerate(documents, start=1):
            changes = metric_changes(doc, received_at, settings.duration_buckets)
            if args.format == "json":
                entry = {"file": name, "index": index, **_document_json(doc)}
                entry["metric_changes"] = changes
                print(json.dumps(entry, default=str, ensure_ascii=False))
            else:
                _print_text(name, index, doc, changes)
            if isinstance(doc.event, Unrecognized):
                print(f"{name} #{index}: not understood: {doc.event.reason}", file=sys.stderr)
                failed = True
    return 1 if failed else 0
