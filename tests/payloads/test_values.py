"""Value rules: times, counts, error codes, activity labels, names (protocol notes §18)."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.domain import ActivityResult, ActivityStatus, Document, FlowKey
from exporter.normalize.values import ANOMALY_FIELDS, FUTURE_SLACK
from tests.payloads.samples import FLOW_ID, RECEIVED_AT, as_run, encode, only, run_doc


def with_times(durations: dict[str, Any], **fields: Any) -> Document:
    """A successful bare run with the given durationSummary and run fields."""
    metrics = {"durationSummary": durations, "statusSummary": {"status": "success"}}
    return only(encode(run_doc(metrics=metrics, **fields)))


def with_count(value: Any) -> Document:
    """A successful bare run whose inputRecordCount is `value`."""
    metrics = {"recordSummary": {"inputRecordCount": value}, "statusSummary": {"status": "success"}}
    return only(encode(run_doc(metrics=metrics)))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1590512053, 1590512053.0),
        (1597434147190, 1597434147.19),
        (1_799_999_999, 1_799_999_999.0),
        (100_000_000_000, 100_000_000.0),
        (1590512053.5, 1590512053.5),
        ("1590512053", 1590512053.0),
        ("1597434147190", 1597434147.19),
        (" 1590512053.25 ", 1590512053.25),
        ("2020-08-14T20:10:16Z", 1597435816.0),
        ("2020-08-14T20:10:16.500+00:00", 1597435816.5),
        ("2020-08-14T22:10:16+02:00", 1597435816.0),
        ("2020-08-14T20:10:16", 1597435816.0),
        ("2020-08-14", 1597363200.0),
    ],
)
def test_valid_times(value: Any, seconds: float) -> None:
    """Below 1e11 a number is seconds, else ms; digit strings and ISO-8601 (naive = UTC) parse."""
    document = with_times({"startedAtUTC": value})
    assert as_run(document).started_at == seconds
    assert document.anomalies == ()


@pytest.mark.parametrize("value", [0, -1, 0.0, -1.0, "0", "-1", {}, None])
def test_unknown_times_are_not_anomalies(value: Any) -> None:
    """0, -1, `{}` and null are Adobe's unknown: no time, no anomaly."""
    document = with_times({"startedAtUTC": value})
    assert as_run(document).started_at is None
    assert document.anomalies == ()


@pytest.mark.parametrize(
    "value",
    [
        -5,
        -1.5,
        "-7",
        True,
        False,
        "yesterday",
        "",
        "2020-13-45T00:00:00Z",
        "1969-12-31T23:59:59Z",
        10**30,
        1e300,
        "9" * 20,
        [1590512053],
        {"seconds": 1590512053},
        "x" * 100,
    ],
)
def test_invalid_times_are_anomalies(value: Any) -> None:
    """Other negatives, bools, garbage, far-future and wrong types are unknown and anomalous."""
    document = with_times({"startedAtUTC": value})
    assert as_run(document).started_at is None
    assert document.anomalies == ("startedAtUTC",)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_times_are_anomalies(literal: bytes) -> None:
    """NaN and infinities are anomalies."""
    body = b'{"flowId": "f", "id": "r", "updatedAt": %s, "metrics": {"statusSummary": ' % literal
    document = only(body + b'{"status": "failed"}}}')
    assert as_run(document).completed_at is None
    assert document.anomalies == ("updatedAt",)


def test_completion_before_start_has_no_duration() -> None:
    """Completion before start: no duration, an anomaly on completedAtUTC, updatedAt completes."""
    document = with_times(
        {"startedAtUTC": 1597435816000, "completedAtUTC": 1597435805000}, updatedAt=1597435949760
    )
    run = as_run(document)
    assert run.duration_seconds is None
    assert run.completed_at == 1597435949.76
    assert document.anomalies == ("completedAtUTC",)


def test_updated_at_never_makes_a_duration() -> None:
    """The updatedAt fallback feeds the completion time only, never the duration."""
    run = as_run(with_times({"startedAtUTC": 1597435805000}, updatedAt=1597435949760))
    assert (run.completed_at, run.duration_seconds) == (1597435949.76, None)


def test_receipt_time_is_left_to_the_store() -> None:
    """Without any completion time, completed_at is None (the store uses the receipt time)."""
    assert as_run(with_times({})).completed_at is None


def test_activity_times_are_ignored() -> None:
    """Only run-level fields feed the run's times (activity updatedAtUTC is nonsense, §4.4)."""
    activity = {"id": "copyActivity", "durationSummary": {"completedAtUTC": 1597435816000}}
    document = only(encode(run_doc(activities=[activity])))
    assert as_run(document).completed_at is None


@pytest.mark.parametrize(
    ("value", "count"),
    [(0, 0), (100, 100), (100.0, 100), ("100", 100), (" 7 ", 7), (2**53 - 1, 2**53 - 1)],
)
def test_valid_counts(value: Any, count: int) -> None:
    """Finite integers in [0, 2^53), numeric strings included, are counted."""
    document = with_count(value)
    assert as_run(document).input_records == count
    assert document.anomalies == ()


@pytest.mark.parametrize("value", [-1, -1.0, "-1", {}, None])
def test_unknown_counts_are_not_anomalies(value: Any) -> None:
    """-1, `{}` and null are unknown without an anomaly."""
    document = with_count(value)
    assert as_run(document).input_records is None
    assert document.anomalies == ()


@pytest.mark.parametrize(
    "value",
    [-2, 2**53, 10**40, 1e300, 12.5, True, False, "12.5", "1e3", "", "abc", [1], {"n": 1}],
)
def test_invalid_counts_are_anomalies(value: Any) -> None:
    """Negatives, huge numbers, fractions, bools, strings that are not digits, containers."""
    document = with_count(value)
    assert as_run(document).input_records is None
    assert document.anomalies == ("inputRecordCount",)


def test_summaries_that_are_not_objects_are_anomalies() -> None:
    """A summary that is not an object is an anomaly named after it."""
    metrics = {"sizeSummary": [1], "recordSummary": "x", "statusSummary": {"status": "success"}}
    document = only(encode(run_doc(metrics=metrics)))
    assert sorted(document.anomalies) == ["recordSummary", "sizeSummary"]


def test_every_anomaly_field_is_bounded() -> None:
    """Anomaly field names come from a fixed set of JSON field names."""
    assert {"inputBytes", "startedAtUTC", "updatedAt", "resolvedAt"} <= ANOMALY_FIELDS
    assert "other" not in ANOMALY_FIELDS


def test_error_codes_are_validated() -> None:
    """Codes outside ^[A-Za-z0-9._:-]{1,64}$ become "other"; numbers are codes; messages kept."""
    errors = [
        {"code": "CONNECTOR-1001-500", "message": "copy\r\nfailed"},
        {"code": "bad code!", "message": "m" * 2000},
        {"code": "x" * 65},
        {"code": 2200, "message": "numeric"},
        {"message": "no code"},
        "just a string",
        {"code": "CONNECTOR-1001-500", "message": "second time"},
        {"code": True},
    ]
    metrics = {"statusSummary": {"status": "failed", "errors": errors}}
    run = as_run(only(encode(run_doc(metrics=metrics))))
    assert [error.code for error in run.errors] == ["CONNECTOR-1001-500", "other", "2200"]
    assert run.errors[0].message == "copy  failed"
    assert run.errors[1].message == "m" * 1000
    assert run.errors[2].message == "numeric"


def test_error_lists_that_are_not_lists() -> None:
    """Run-level errors/failedInfo that are not lists are anomalies; activity ones are skipped."""
    metrics = {
        "recordSummary": {"failedInfo": "x"},
        "statusSummary": {"status": "failed", "errors": {"code": "A"}},
    }
    activity = {"id": "a", "statusSummary": {"errors": 5, "extensions": {"errors": "x"}}}
    document = only(encode(run_doc(metrics=metrics, activities=[activity])))
    assert as_run(document).errors == ()
    assert sorted(document.anomalies) == ["errors", "failedInfo"]


def test_activity_labels_and_statuses() -> None:
    """Label is id, else name, validated; status success/failed, anything else "other"."""
    activities = [
        {"id": "copyActivity", "name": "Copy", "statusSummary": {"status": "success"}},
        {"name": "promotion.v2", "statusSummary": {"status": "FAILED"}},
        {"id": "", "name": "SFTP Copy Activity", "statusSummary": {"status": "inProgress"}},
        {"statusSummary": "x"},
        7,
    ]
    document = only(encode(run_doc(activities=activities)))
    assert as_run(document).activities == (
        ActivityResult("copyActivity", ActivityStatus.SUCCESS),
        ActivityResult("promotion.v2", ActivityStatus.FAILED),
        ActivityResult("other", ActivityStatus.OTHER),
        ActivityResult("other", ActivityStatus.OTHER),
    )
    assert document.anomalies == ("activities",)


def test_flow_name_and_org_hygiene() -> None:
    """Names are stripped, lose control characters and stop at 200 characters; empty is None."""
    run = as_run(only(encode(run_doc(flowName="  Sales\x00 plan\n " + "x" * 300, imsOrgId=" "))))
    assert run.flow_name is not None
    assert run.flow_name.startswith("Sales plan")
    assert len(run.flow_name) == 200
    assert run.ims_org is None


def test_flow_name_of_the_wrong_type_is_an_anomaly() -> None:
    """A flowName that is not a string is ignored and counted."""
    document = only(encode(run_doc(flowName=["x"])))
    assert as_run(document).flow_name is None
    assert document.anomalies == ("flowName",)


@pytest.mark.parametrize(
    ("fields", "sandbox", "anomalies"),
    [
        ({"sandboxName": "dev"}, "dev", ()),
        ({"sandboxName": None}, "unknown", ()),
        ({"sandboxName": 3}, "unknown", ("sandboxName",)),
        ({"sandboxName": "two words"}, "unknown", ("sandboxName",)),
    ],
)
def test_sandbox(fields: dict[str, Any], sandbox: str, anomalies: tuple[str, ...]) -> None:
    """sandboxName names the sandbox; absent or invalid is "unknown"."""
    document = only(encode(run_doc(**fields)))
    assert as_run(document).flow == FlowKey(sandbox, FLOW_ID)
    assert document.anomalies == anomalies


def test_run_without_id_has_only_a_hash_key() -> None:
    """A run without an id has no domain key, so its raw hash keys it."""
    document = only(encode(run_doc(id=None)))
    assert as_run(document).run_id is None
    assert len(document.dedup_keys) == 1
    assert document.dedup_keys[0].startswith("sha256:")


def test_run_id_of_the_wrong_type_is_an_anomaly() -> None:
    """A run id that is not a string is dropped and counted."""
    document = only(encode(run_doc(id=17)))
    assert as_run(document).run_id is None
    assert document.anomalies == ("id",)


@pytest.mark.parametrize(
    ("offset", "valid"), [(3600, True), (FUTURE_SLACK, True), (FUTURE_SLACK + 1, False)]
)
def test_times_after_receipt_beyond_the_slack_are_invalid(offset: float, valid: bool) -> None:
    """A time more than a day after receipt would pin the last-run gauges: an anomaly."""
    document = with_times({"startedAtUTC": int(RECEIVED_AT + offset)})
    assert (as_run(document).started_at is not None) is valid
    assert document.anomalies == (() if valid else ("startedAtUTC",))


def test_the_far_future_boundary_case_is_invalid() -> None:
    """1e11 - 1 is seconds (year 5138): a time after receipt, so unknown."""
    document = with_times({"startedAtUTC": 99_999_999_999})
    assert as_run(document).started_at is None
    assert document.anomalies == ("startedAtUTC",)
