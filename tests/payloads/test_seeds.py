"""The two documented seed examples normalize field by field (protocol notes §18)."""

from __future__ import annotations

import json

from exporter.domain import (
    ActivityResult,
    ActivityStatus,
    Document,
    DocumentKind,
    FlowKey,
    Outcome,
)
from tests.payloads.samples import as_run, fixture_bytes


def test_seed_success_identity(seed_success: Document) -> None:
    """The success seed is one run of flow (prod, 1c6f1047-…) with its event and run ids."""
    run = as_run(seed_success)
    assert seed_success.kind is DocumentKind.RUN
    assert run.flow == FlowKey("prod", "1c6f1047-dcaf-48fe-af10-47dcaf08feaf")
    assert run.run_id == "933cf9f4-cf01-4d75-bcf9-f4cf010d750a"
    assert run.outcome is Outcome.SUCCESS
    assert run.flow_name is None
    assert run.ims_org == "{ORG_ID}"
    assert seed_success.event_id == "aec55616-1715-487f-8044-ba648cc8ffee"
    assert seed_success.recipient is None


def test_seed_success_times_in_seconds_give_duration_zero(seed_success: Document) -> None:
    """Ten-digit times are seconds; equal start and completion observe a duration of 0."""
    run = as_run(seed_success)
    assert run.started_at == 1590512053.0
    assert run.completed_at == 1590512053.0
    assert run.duration_seconds == 0.0


def test_seed_success_counts(seed_success: Document) -> None:
    """Records 100/70, bytes 2048/1024 and files 10/10; failed records are not reported."""
    run = as_run(seed_success)
    assert (run.input_records, run.output_records, run.failed_records) == (100, 70, None)
    assert (run.input_bytes, run.output_bytes) == (2048, 1024)
    assert (run.input_files, run.output_files) == (10, 10)


def test_seed_success_activities_errors_and_anomalies(seed_success: Document) -> None:
    """Both activities succeed, no error is reported and no value is anomalous."""
    run = as_run(seed_success)
    assert run.activities == (
        ActivityResult("copyActivity", ActivityStatus.SUCCESS),
        ActivityResult("promotionActivity", ActivityStatus.SUCCESS),
    )
    assert run.errors == ()
    assert seed_success.anomalies == ()


def test_seed_success_dedup_keys(seed_success: Document) -> None:
    """The success seed is keyed by its event id and by (run id, success)."""
    assert seed_success.dedup_keys == (
        "event:aec55616-1715-487f-8044-ba648cc8ffee",
        "run:933cf9f4-cf01-4d75-bcf9-f4cf010d750a:success",
    )


def test_seed_success_raw_is_the_canonical_document(seed_success: Document) -> None:
    """The raw bytes are the canonical JSON of the whole legacy wrapper."""
    value = json.loads(fixture_bytes("seed_success.json"))
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert seed_success.raw == canonical.encode()


def test_seed_failure_identity(seed_failure: Document) -> None:
    """The failure seed is one failed run of flow (prod, cf4fce79-…) without an event id."""
    run = as_run(seed_failure)
    assert seed_failure.kind is DocumentKind.RUN
    assert run.flow == FlowKey("prod", "cf4fce79-8822-456d-8fce-798822556dc6")
    assert run.run_id == "d9024c32-2174-4271-824c-322174627101"
    assert run.outcome is Outcome.FAILED
    assert run.ims_org == "{ORG_ID}"
    assert seed_failure.event_id is None
    assert seed_failure.recipient is None


def test_seed_failure_times_fall_back_to_updated_at(seed_failure: Document) -> None:
    """Without completedAtUTC the completion is updatedAt in ms, and no duration is observed."""
    run = as_run(seed_failure)
    assert run.completed_at == 1597434157.567
    assert run.started_at == 1597434147.19
    assert run.duration_seconds is None


def test_seed_failure_minus_one_is_unknown_not_anomalous(seed_failure: Document) -> None:
    """`-1` bytes and files and the empty recordSummary are unknown, not anomalies."""
    run = as_run(seed_failure)
    assert (run.input_records, run.output_records, run.failed_records) == (None, None, None)
    assert (run.input_bytes, run.output_bytes) == (None, None)
    assert (run.input_files, run.output_files) == (None, None)
    assert seed_failure.anomalies == ()


def test_seed_failure_error_codes_once_each(seed_failure: Document) -> None:
    """CONNECTOR-2001-500 (run and activity) and 133 (extension) are reported once each."""
    run = as_run(seed_failure)
    assert [error.code for error in run.errors] == ["CONNECTOR-2001-500", "133"]
    assert run.errors[0].message.startswith("Error in processing (parsing, validation")
    assert run.errors[1].message.startswith("We are unable to locate any files")
    assert run.activities == (ActivityResult("promotionActivity", ActivityStatus.FAILED),)


def test_seed_failure_dedup_keys_and_raw(seed_failure: Document) -> None:
    """The failure seed is keyed by (run id, failed); its raw is `{"messages": [message]}`."""
    assert seed_failure.dedup_keys == ("run:d9024c32-2174-4271-824c-322174627101:failed",)
    message = json.loads(fixture_bytes("seed_failure.json"))[0]["messages"][0]
    assert json.loads(seed_failure.raw) == {"messages": [message]}
    assert not any(key.startswith("sha256:") for key in seed_failure.dedup_keys)
