"""Every documented payload shape is classified and normalized (protocol notes §4.2, §4.6)."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.domain import (
    ActivityResult,
    ActivityStatus,
    AlertKind,
    DocumentKind,
    FlowKey,
    FlowStart,
    OtherService,
    Outcome,
    Unrecognized,
    ValidationMessage,
)
from tests.payloads.samples import (
    FLOW_ID,
    RUN_ID,
    as_alert,
    as_run,
    as_start,
    encode,
    fixture_bytes,
    normalize,
    only,
    run_doc,
)


def test_cloudevents_envelope() -> None:
    """A CloudEvent's data is the run; eventid, recipient and ms times are read."""
    document = only(fixture_bytes("cloudevents_success.json"))
    run = as_run(document)
    assert run.flow == FlowKey("prod", "2a7d9c41-6b3e-4f58-9d0a-1c8e7b5f3d26")
    assert run.outcome is Outcome.SUCCESS
    assert (run.started_at, run.completed_at) == (1694474649.498, 1694474676.869)
    assert run.duration_seconds == 27.371
    assert (run.input_records, run.output_records) == (250000, 250000)
    assert (run.input_bytes, run.output_bytes, run.input_files, run.output_files) == (
        52428800,
        41943040,
        4,
        4,
    )
    assert document.event_id == "5b0d8a0e-9c52-4f3e-8b1c-2f7e3f1d2a10"
    assert document.recipient == "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    assert document.dedup_keys == (
        "event:5b0d8a0e-9c52-4f3e-8b1c-2f7e3f1d2a10",
        "run:3f6c1e2a-8d4b-4c7e-9a1f-5b2d6e8c0a14:success",
    )


def test_cloudevent_type_is_the_event_code_without_status() -> None:
    """Without a status, the CloudEvent `type` decides the outcome."""
    data = run_doc(metrics={})
    body = encode({"specversion": "1.0", "type": "sources_flow_run_failed", "data": data})
    assert as_run(only(body)).outcome is Outcome.FAILED


def test_header_event_code_wins_over_cloudevent_type() -> None:
    """data.header._adobeio.eventCode is preferred to the CloudEvent type."""
    data = run_doc(metrics={}, header={"_adobeio": {"eventCode": "sources_flow_run_success"}})
    body = encode({"specversion": "1.0", "type": "sources_flow_run_failed", "data": data})
    assert as_run(only(body)).outcome is Outcome.SUCCESS


def test_messages_without_outer_array() -> None:
    """`{"messages": [...]}` with ms times: CONNECTOR-1001-500 and the nested 2200 once each."""
    document = only(fixture_bytes("messages_copy_failure.json"))
    run = as_run(document)
    assert run.flow == FlowKey("prod", "df6bb78d-a5ed-48b5-abb7-8da5ed68b53e")
    assert run.outcome is Outcome.FAILED
    assert (run.started_at, run.completed_at, run.duration_seconds) == (
        1597435805.0,
        1597435816.0,
        11.0,
    )
    assert [error.code for error in run.errors] == ["CONNECTOR-1001-500", "2200"]
    assert run.activities == (ActivityResult("copyActivity", ActivityStatus.FAILED),)
    assert document.dedup_keys == ("run:ed8f3982-14e4-4685-8f39-8214e4468502:failed",)
    assert document.anomalies == ()


def test_alert_schema_success_with_flow_name() -> None:
    """A bare run object carries flowName; activity labels come from `id`."""
    document = only(fixture_bytes("alert_schema_success.json"))
    run = as_run(document)
    assert run.flow == FlowKey("mlb-enablement", "cd9b4bbc-c1c6-4630-859e-49776afb483b")
    assert run.outcome is Outcome.SUCCESS
    assert run.flow_name == "Employee - Stolz Maria DB"
    assert run.ims_org == "A65F776A5245B01B0A490D44@AdobeOrg"
    assert run.duration_seconds == 27.371
    assert (run.input_records, run.input_bytes, run.output_records) == (0, 0, None)
    assert run.activities == (
        ActivityResult("4f008a00-3a04-11eb-adc1-0242ac120002", ActivityStatus.SUCCESS),
    )


def test_alert_schema_start() -> None:
    """status inProgress is a start, keyed (run id, started)."""
    document = only(fixture_bytes("alert_schema_start.json"))
    start = as_start(document)
    assert document.kind is DocumentKind.START
    assert start == FlowStart(
        flow=FlowKey("dev", "05222685-e2b7-4367-a5a2-db4d7acda43d"),
        run_id="66643b20-dc76-4b04-bacf-93bee162683c",
        started_at=None,
        flow_name="Sales plan- weekly_plan.csv",
        ims_org="A565899B544AA2E80A4C98BC@AdobeOrg",
    )
    assert document.dedup_keys == ("run:66643b20-dc76-4b04-bacf-93bee162683c:started",)


def test_alert_schema_failure_reads_failed_info() -> None:
    """recordSummary.failedInfo codes count like any other error code."""
    run = as_run(only(fixture_bytes("alert_schema_failure.json")))
    assert run.outcome is Outcome.FAILED
    assert [error.code for error in run.errors] == ["CONNECTOR-1001-500", "2200"]
    assert run.duration_seconds == 1446.933
    assert run.flow_name == "Dataflow - wx_medallia_export_combined.csv"


def test_alert_delay_firing() -> None:
    """A FIRING delay alert is timed by createdAt (ISO-8601)."""
    document = only(fixture_bytes("alert_delay_firing.json"))
    alert = as_alert(document)
    assert document.kind is DocumentKind.ALERT
    assert alert.flow == FlowKey("observability-01", "de887077-5cf6-425f-9472-257168ad3c97")
    assert (alert.alert, alert.firing) == (AlertKind.DELAY, True)
    assert alert.name == "sources_flow_run_delay_e2e_va7_prod"
    assert alert.at == 1693542464.922
    assert document.dedup_keys == (
        "alert:observability-01:de887077-5cf6-425f-9472-257168ad3c97:delay:FIRING:1693542464.922",
    )


def test_alert_error_rate_inactive() -> None:
    """An INACTIVE error-rate alert is timed by resolvedAt."""
    document = only(fixture_bytes("alert_error_rate_inactive.json"))
    alert = as_alert(document)
    assert alert.flow == FlowKey("prod", "4045eb32-95e2-4c54-a6b2-07209c43fff7")
    assert (alert.alert, alert.firing) == (AlertKind.ERROR_RATE, False)
    assert alert.at == 1693542714.661
    assert document.dedup_keys == (
        "alert:prod:4045eb32-95e2-4c54-a6b2-07209c43fff7:error_rate:INACTIVE:1693542714.661",
    )


@pytest.mark.parametrize(
    ("fields", "kind", "at", "key_time"),
    [
        (
            {"name": "sources_flow_run_delay", "createdAt": 1700000000},
            AlertKind.DELAY,
            1.7e9,
            "1700000000.0",
        ),
        (
            {"name": "Something Else", "createdAt": "1700000000000"},
            AlertKind.OTHER,
            1.7e9,
            "1700000000.0",
        ),
        ({"name": 42}, AlertKind.OTHER, None, "none"),
    ],
)
def test_alert_kind_and_time_variants(
    fields: dict[str, Any], kind: AlertKind, at: float | None, key_time: str
) -> None:
    """Alert kind comes from the name; epoch or digit-string times; no time is "none"."""
    body = encode({"status": "firing", "flowId": FLOW_ID, **fields})
    document = only(body)
    alert = as_alert(document)
    assert (alert.alert, alert.at, alert.firing) == (kind, at, True)
    assert document.dedup_keys == (f"alert:unknown:{FLOW_ID}:{kind.value}:FIRING:{key_time}",)


def test_inactive_alert_without_resolved_at_has_no_time() -> None:
    """INACTIVE is timed only by resolvedAt: createdAt is when it fired."""
    body = encode({"status": "INACTIVE", "flowId": FLOW_ID, "name": "x", "createdAt": 1.7e9})
    assert as_alert(only(body)).at is None


def test_partial_ingestion_success_with_errors() -> None:
    """A success with failed records keeps every error code, extension codes included."""
    document = only(fixture_bytes("partial_ingestion.json"))
    run = as_run(document)
    assert run.outcome is Outcome.SUCCESS
    assert [error.code for error in run.errors] == [
        "CONNECTOR-2001-500",
        "INGEST-1212-400",
        "MAPPER-3700-400",
    ]
    assert (run.input_records, run.output_records, run.failed_records) == (100, 99, 1)
    assert run.duration_seconds == 55.108
    assert document.event_id == "0f6d3b8e-2c41-4a7b-9e55-7d1a3c9b2e60"


def test_string_times_and_counts() -> None:
    """Digit-string seconds, ISO-8601 and numeric-string counts are valid values."""
    document = only(fixture_bytes("string_times.json"))
    run = as_run(document)
    assert (run.started_at, run.completed_at, run.duration_seconds) == (
        1597435805.0,
        1597435816.0,
        11.0,
    )
    assert (run.input_records, run.output_records, run.failed_records) == (100, 98, 2)
    assert (run.input_bytes, run.output_bytes, run.input_files, run.output_files) == (
        4096,
        2048,
        1,
        1,
    )
    assert document.anomalies == ()


def test_bad_counts_are_unknown_and_anomalous() -> None:
    """NaN, huge, negative, fractional and bool counts are anomalies; -1, {} and 0 times are not."""
    document = only(fixture_bytes("bad_counts.json"))
    run = as_run(document)
    assert (run.input_records, run.output_records, run.failed_records) == (None, None, None)
    assert (run.input_bytes, run.output_bytes) == (None, None)
    assert (run.input_files, run.output_files) == (7, None)
    assert run.started_at is None
    assert run.completed_at == 1597435949.76  # completedAtUTC 0 is unknown: updatedAt
    assert sorted(document.anomalies) == [
        "failedRecordCount",
        "inputBytes",
        "inputRecordCount",
        "outputBytes",
        "outputRecordCount",
    ]


def test_bad_times_are_unknown_and_anomalous() -> None:
    """A negative time, a garbage string and infinity are anomalies; completion falls to None."""
    document = only(fixture_bytes("bad_times.json"))
    run = as_run(document)
    assert (run.started_at, run.completed_at, run.duration_seconds) == (None, None, None)
    assert document.anomalies == ("startedAtUTC", "completedAtUTC", "updatedAt")
    assert run.outcome is Outcome.FAILED


def test_batch_of_mixed_documents() -> None:
    """Each batch element is classified by shape: messages split, nested arrays flattened."""
    documents = normalize(fixture_bytes("batch_mixed.json"))
    assert [document.kind for document in documents] == [
        DocumentKind.RUN,
        DocumentKind.RUN,
        DocumentKind.RUN,
        DocumentKind.START,
        DocumentKind.ALERT,
        DocumentKind.RUN,
        DocumentKind.UNKNOWN,
    ]
    legacy, cloud_event, message_run, message_start, alert, nested, unknown = documents
    assert as_run(legacy).duration_seconds == 60.0
    assert legacy.event_id == "11111111-2222-4333-8444-555555555555"
    assert as_run(cloud_event).outcome is Outcome.FAILED
    assert as_run(cloud_event).completed_at == 1700000120.0
    assert message_run.recipient == message_start.recipient == "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    assert message_run.event_id is None
    assert as_start(message_start).run_id == "a4000000-0000-4000-8000-000000000004"
    assert as_alert(alert).at == 1700001000.0
    assert as_run(nested).flow.flow_id == "f5000000-0000-4000-8000-00000000000f"
    assert unknown.event == Unrecognized("unknown document shape")


def test_other_services_are_acknowledged_not_flows() -> None:
    """identity_*, destination_* and platform_event codes are other services."""
    documents = normalize(fixture_bytes("other_services.json"))
    assert [document.event for document in documents] == [
        OtherService("identity_ingestion_info"),
        OtherService("destination_flow_run_failed"),
        OtherService("platform_event"),
    ]
    assert all(document.kind is DocumentKind.OTHER_SERVICE for document in documents)
    assert all(document.dedup_keys[-1].startswith("sha256:") for document in documents)


@pytest.mark.parametrize(
    "code", ["profile_ingestion_info", "segment_job_failed", "Identity_Ingestion_Info"]
)
def test_other_service_prefixes(code: str) -> None:
    """Every other-service prefix wins over the run shape, case aside."""
    body = encode(run_doc(header={"_adobeio": {"eventCode": code}}))
    assert only(body).event == OtherService(code)


def test_validation_message() -> None:
    """`{"validationUrl": ...}` is a validation document, keyed by its hash."""
    document = only(fixture_bytes("validation.json"))
    assert document.kind is DocumentKind.VALIDATION
    assert isinstance(document.event, ValidationMessage)
    assert document.event.url.startswith("https://csm.adobe.io/csm/registrations/validate?")
    assert document.dedup_keys[0].startswith("sha256:")


def test_run_without_flow_id_fixture() -> None:
    """A legacy wrapper whose run has no flowId is unknown, keyed by event id and hash."""
    document = only(fixture_bytes("unknown_run_without_flow_id.json"))
    assert document.kind is DocumentKind.UNKNOWN
    assert document.event == Unrecognized("run without flowId")
    assert document.dedup_keys[0] == "event:44444444-5555-4666-8777-888888888888"
    assert document.dedup_keys[1].startswith("sha256:")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (42, "document is not an object"),
        ("text", "document is not an object"),
        (None, "document is not an object"),
        ({}, "unknown document shape"),
        ({"event": "not an object"}, "unknown document shape"),
        ({"event_id": "x", "event": {"foo": 1}}, "unknown document shape"),
        ({"messages": {"not": "a list"}}, "messages is not a list"),
        ({"messages": [7]}, "message is not an object"),
        ({"messages": [{"_eventNotificationMeta": {"type": "x"}}]}, "message without value object"),
        ({"specversion": "1.0", "type": "t", "data": "text"}, "CloudEvent without data object"),
        ({"validationUrl": 5}, "validationUrl is not a string"),
        (run_doc(flowId=None), "run without flowId"),
        (run_doc(flowId=12), "run with invalid flowId"),
        (run_doc(flowId="has space"), "run with invalid flowId"),
        (run_doc(flowId="x" * 129), "run with invalid flowId"),
        (run_doc(metrics={"statusSummary": {"status": "cancelled"}}), "run without outcome"),
        (run_doc(metrics=None) | {"metrics": None}, "run without outcome"),
        ({"status": "FIRING", "name": "delay"}, "alert without flowId"),
        ({"status": "FIRING", "flowId": ""}, "alert with invalid flowId"),
    ],
)
def test_unrecognized_documents(value: Any, reason: str) -> None:
    """What cannot be understood becomes UNKNOWN with a fixed reason and a hash key."""
    document = only(encode(value))
    assert document.kind is DocumentKind.UNKNOWN
    assert document.event == Unrecognized(reason)
    assert document.dedup_keys[-1].startswith("sha256:")


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("sources_flow_run_success", Outcome.SUCCESS),
        ("sources_flow_run_failed", Outcome.FAILED),
        ("sources_flow_run_failure", Outcome.FAILED),
        ("source_flow_run_error", Outcome.FAILED),
    ],
)
def test_outcome_falls_back_to_the_event_code(code: str, outcome: Outcome) -> None:
    """Without a status the event code decides success or failure."""
    body = encode(run_doc(metrics={}, header={"_adobeio": {"eventCode": code}}))
    assert as_run(only(body)).outcome is outcome


def test_status_wins_over_the_event_code() -> None:
    """metrics.statusSummary.status is the source of truth."""
    header = {"_adobeio": {"eventCode": "sources_flow_run_success"}}
    metrics = {"statusSummary": {"status": "failed"}}
    assert as_run(only(encode(run_doc(metrics=metrics, header=header)))).outcome is Outcome.FAILED


def test_source_flow_run_info_needs_a_status() -> None:
    """source_flow_run_info announces starts and successes, so alone it decides nothing."""
    body = encode(run_doc(metrics={}, header={"_adobeio": {"eventCode": "source_flow_run_info"}}))
    assert only(body).event == Unrecognized("run without outcome")


def test_message_meta_type_is_the_event_code() -> None:
    """A message's `_eventNotificationMeta.type` decides the outcome without a status."""
    message = {
        "_eventNotificationMeta": {"type": "sources_flow_run_failed"},
        "value": run_doc(metrics={}),
    }
    assert as_run(only(encode({"messages": [message]}))).outcome is Outcome.FAILED


def test_event_code_alone_makes_a_run_shape() -> None:
    """A legacy event with a source event code but no flowId is a run without flowId."""
    event = {"id": RUN_ID, "header": {"_adobeio": {"eventCode": "sources_flow_run_failed"}}}
    assert only(encode({"event": event})).event == Unrecognized("run without flowId")


@pytest.mark.parametrize("body", [b"[]", b"[[]]", b'{"messages": []}', b'[{"messages": []}]'])
def test_empty_bodies_hold_no_documents(body: bytes) -> None:
    """Empty arrays and empty message lists yield no document."""
    assert normalize(body) == []


def test_seed_failure_form_inside_a_batch() -> None:
    """`[{"messages": [...]}]` as one element of a batch still yields its messages."""
    failure = [{"messages": [{"value": run_doc(id="r1")}, {"value": run_doc(id="r2")}]}]
    documents = normalize(encode([failure, run_doc(id="r3")]))
    assert [as_run(document).run_id for document in documents] == ["r1", "r2", "r3"]


def test_lowercase_status_and_alert_status_are_accepted() -> None:
    """Statuses compare without case: SUCCESS, InProgress, firing."""
    assert as_run(only(encode(run_doc({"statusSummary": {"status": "SUCCESS"}})))).outcome is (
        Outcome.SUCCESS
    )
    assert only(encode(run_doc({"statusSummary": {"status": "InProgress"}}))).kind is (
        DocumentKind.START
    )
