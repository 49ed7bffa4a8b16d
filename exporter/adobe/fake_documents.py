"""Adobe API documents for the fake (protocol notes §10.2, §11, §12.2) and Flow Service filters."""

from __future__ import annotations

import re
from typing import Any

S3_SPEC_ID = "ecadc60c-7455-4d87-84dc-2a0e293d997b"
DATA_LAKE_SPEC_ID = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
# `property=<path><op><value>`; `==` takes comma lists, `[]` walks arrays (protocol notes §11.2).
_FILTER = re.compile(r"([A-Za-z0-9_.\[\]]+)(==|!=|>=|<=|>|<)(.*)")


def flow(
    flow_id: str,
    *,
    sandbox: str = "prod",
    name: str | None = None,
    source_spec_id: str = S3_SPEC_ID,
    state: str = "enabled",
    frequency: str | None = "hour",
    interval: str = "1",
    last_run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A source flow as GET /flows lists it (protocol notes §11.1)."""
    document: dict[str, Any] = {
        "id": flow_id,
        "name": name or f"flow {flow_id}",
        "description": "",
        "state": state,
        "sandboxName": sandbox,
        "imsOrgId": "FAKE0RG@AdobeOrg",
        "flowSpec": {"id": "9753525b-82c7-4dce-8a9b-5ccfce2b9876", "version": "1.0"},
        "sourceConnectionIds": [f"src-{flow_id}"],
        "targetConnectionIds": [f"dst-{flow_id}"],
        "inheritedAttributes": {
            "properties": {"isSourceFlow": True, "isDestinationFlow": False},
            "sourceConnections": [
                {
                    "id": f"src-{flow_id}",
                    "connectionSpec": {"id": source_spec_id, "version": "1.0"},
                    "baseConnection": {
                        "id": f"base-{flow_id}",
                        "connectionSpec": {"id": source_spec_id, "version": "1.0"},
                    },
                }
            ],
            "targetConnections": [
                {"id": f"dst-{flow_id}", "connectionSpec": {"id": DATA_LAKE_SPEC_ID}}
            ],
        },
        # Strings, as in the docs; the spec says integers (protocol notes §11.3).
        "scheduleParams": (
            {"startTime": "1612310466", "frequency": frequency, "interval": interval}
            if frequency is not None
            else None
        ),
        "runs": f"/runs?property=flowId=={flow_id}",
        "etag": '"0100b4c1-0000-0200-0000-5f3a3c6c0000"',
        "createdAt": 1597784298000,
        "updatedAt": 1597784298000,
        "createdClient": "exc_app",
    }
    if document["scheduleParams"] is None:
        del document["scheduleParams"]
    if last_run is not None:
        document["lastRunDetails"] = last_run
    return document


def run(
    run_id: str,
    flow_id: str,
    *,
    status: str = "success",
    started_ms: int = 1597784298000,
    completed_ms: int | None = 1597784358000,
    sandbox: str = "prod",
    input_records: int = 100,
) -> dict[str, Any]:
    """A flow run as GET /runs lists it (protocol notes §12.2)."""
    duration: dict[str, Any] = {"startedAtUTC": started_ms}
    if completed_ms is not None:
        duration["completedAtUTC"] = completed_ms
    return {
        "id": run_id,
        "flowId": flow_id,
        "sandboxName": sandbox,
        "sandboxId": f"{sandbox}-id",
        "imsOrgId": "FAKE0RG@AdobeOrg",
        "createdAt": started_ms,
        "updatedAt": completed_ms or started_ms,
        "etag": '"0000"',
        "providerRefId": f"M-{flow_id}-incremental-0:{run_id}",
        "metrics": {
            "durationSummary": duration,
            "sizeSummary": {"inputBytes": 1024, "outputBytes": 2048},
            "recordSummary": {
                "inputRecordCount": input_records,
                "outputRecordCount": input_records,
            },
            "fileSummary": {"inputFileCount": 1, "outputFileCount": 1},
            "statusSummary": {"status": status, "errors": []},
        },
        "activities": [],
    }


def connection_spec(spec_id: str = S3_SPEC_ID, name: str = "Amazon S3") -> dict[str, Any]:
    """A connection spec as GET /connectionSpecs/{id} returns its item (protocol notes §11.4)."""
    return {
        "id": spec_id,
        "name": name,
        "providerId": "0ed90a81-07f4-4586-8190-b40eccef1c5a",
        "version": "1.0",
        "attributes": {"category": "Cloud Storage", "connectorName": name, "isSource": True},
    }


def registration(
    *,
    consumer_id: str = "23294",
    project_id: str = "4566206088344794932",
    workspace_id: str = "4566206088344859372",
    registration_id: str = "d1c2b3a4-0000-4000-8000-000000000001",
    webhook_status: str = "verified",
    enabled: bool = True,
    delivery_type: str = "webhook",
    journal_href: str = "",
) -> dict[str, Any]:
    """A V2 registration resource (protocol notes §10.2)."""
    base = f"/events/{consumer_id}/{project_id}/{workspace_id}/registrations/{registration_id}"
    return {
        "id": 248723,
        "registration_id": registration_id,
        "name": "AEP flow runs",
        "description": "Platform notifications for aep-flow-exporter",
        "client_id": "fake-client-id",
        "events_of_interest": [
            {
                "event_code": "platform_event",
                "event_label": "Flow run notifications",
                "event_description": "",
                "provider_id": "aep-provider",
                "provider": "Platform notifications",
                "provider_label": "Platform notifications",
                "event_delivery_format": "adobe_io",
            }
        ],
        "webhook_status": webhook_status,
        "enabled": enabled,
        "delivery_type": delivery_type,
        "webhook_url": "https://exporter.example/webhook",
        "runtime_action": "",
        "created_date": "2026-01-05T10:00:00.000Z",
        "updated_date": "2026-01-05T10:00:00.000Z",
        "consumer_id": consumer_id,
        "project_id": project_id,
        "workspace_id": workspace_id,
        "subscriber_filters": [],
        "_links": {
            "self": {"href": f"https://api.adobe.io{base}"},
            "rel:events": {"href": journal_href},
            "rel:trace": {"href": f"https://eventtraces-va6.adobe.io/traces{base}"},
        },
    }


def select(items: list[dict[str, Any]], expressions: list[str]) -> list[dict[str, Any]]:
    """The items every `property=` expression matches; ValueError for a malformed one."""
    found = items
    for expression in expressions:
        match = _FILTER.fullmatch(expression)
        if match is None:
            raise ValueError(f"invalid property filter {expression!r}")
        path, operator, value = match.groups()
        found = [item for item in found if _matches(_lookup(item, path), operator, value)]
    return found


def _lookup(item: Any, path: str) -> list[Any]:
    values = [item]
    for part in path.split("."):
        name, many = part.removesuffix("[]"), part.endswith("[]")
        values = [v[name] for v in values if isinstance(v, dict) and name in v]
        if many:
            values = [element for v in values if isinstance(v, list) for element in v]
    return values


def _matches(values: list[Any], operator: str, wanted: str) -> bool:
    for value in values:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if operator == "==" and text in wanted.split(","):
            return True
        if operator == "!=" and text not in wanted.split(","):
            return True
        if operator in (">", "<", ">=", "<="):
            try:
                left, right = float(value), float(wanted)
            except (TypeError, ValueError):
                continue
            if {">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right}[
                operator
            ]:
                return True
    return False
