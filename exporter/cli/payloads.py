"""`check-payload`: the normalized form of payload files and the metric changes each would cause."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from exporter.catalogue import Catalogue
from exporter.cli.options import settings_from_args
from exporter.domain import Document, FlowAlert, FlowRun, FlowStart, Unrecognized
from exporter.metrics.flows import FlowCollector
from exporter.normalize import normalize_body
from exporter.payloads.decode import PayloadError
from exporter.records import FlowState, apply_event


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
            changes.append(f"{name} = {value:g}")
        elif old[name] != value:
            changes.append(f"{name} {value - old[name]:+g}")
    return changes


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
    print(f"{source} #{index}: {doc.kind.value} ({type(doc.event).__name__})")
    for key, value in dataclasses.asdict(doc.event).items():
        if value not in (None, (), [], ""):
            print(f"  {key}: {value}")
    print(f"  dedup_keys: {', '.join(doc.dedup_keys)}")
    if doc.anomalies:
        print(f"  anomalies: {', '.join(doc.anomalies)}")
    for change in changes:
        print(f"  metric {change}")


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
