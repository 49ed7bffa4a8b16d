"""Small builders of Adobe-shaped payloads for tests (shapes from protocol notes §4.2)."""

from __future__ import annotations

import json
from typing import Any


def run_object(
    *,
    run_id: str,
    flow_id: str = "flow-a",
    sandbox: str = "prod",
    status: str = "success",
    started_ms: int | None = 1_700_000_000_000,
    completed_ms: int | None = 1_700_000_060_000,
    input_records: int | None = 10,
    output_records: int | None = 10,
    errors: list[str] | None = None,
    flow_name: str | None = None,
) -> dict[str, Any]:
    """A Flow Service run object like the notification's `event` / `value`."""
    duration: dict[str, Any] = {}
    if started_ms is not None:
        duration["startedAtUTC"] = started_ms
    if completed_ms is not None:
        duration["completedAtUTC"] = completed_ms
    record: dict[str, Any] = {}
    if input_records is not None:
        record["inputRecordCount"] = input_records
    if output_records is not None:
        record["outputRecordCount"] = output_records
    summary: dict[str, Any] = {"status": status}
    if errors:
        summary["errors"] = [{"code": code, "message": "boom"} for code in errors]
    run: dict[str, Any] = {
        "id": run_id,
        "flowId": flow_id,
        "sandboxName": sandbox,
        "imsOrgId": "ORG@AdobeOrg",
        "updatedAt": completed_ms or started_ms,
        "metrics": {
            "durationSummary": duration,
            "recordSummary": record,
            "statusSummary": summary,
        },
        "activities": [],
    }
    if flow_name is not None:
        run["flowName"] = flow_name
    return run


def legacy(event_id: str, run: dict[str, Any], code: str | None = None) -> dict[str, Any]:
    """The legacy wrapper `{event_id, event}` of the seed success example."""
    if code is None:
        outcome = run["metrics"]["statusSummary"]["status"]
        code = "sources_flow_run_success" if outcome == "success" else "sources_flow_run_failed"
    event = dict(run, header={"_adobeio": {"eventCode": code}})
    return {"event_id": event_id, "event": event}


def alert(
    *,
    status: str,
    name: str = "sources_flow_run_delay_prod",
    flow_id: str = "flow-a",
    created: str = "2026-01-01T00:00:00.000Z",
    resolved: str | None = None,
) -> dict[str, Any]:
    """An Adobe alert document (delay / error rate)."""
    doc: dict[str, Any] = {
        "id": f"alert-{name}-{status}-{created}",
        "status": status,
        "name": name,
        "createdAt": created,
        "sandboxName": "prod",
        "flowId": flow_id,
        "header": {"_adobeio": {"eventCode": "source_flow_run_error"}},
    }
    if resolved is not None:
        doc["resolvedAt"] = resolved
    return doc


def body(document: Any) -> bytes:
    """JSON bytes of a document or batch."""
    return json.dumps(document).encode()
