"""End to end with the real programs: signed deliveries → exporter → Prometheus rules →
Alertmanager → receiver, and every dashboard query evaluated by the real Prometheus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SUCCESS_FLOW, fixture_bytes
from tests.dashboards.queries import fed_queries, substitute_variables
from tests.e2e.stack import Stack
from tests.payload_builders import alert, body, legacy, run_object
from tests.support import http_json, wait_for

FLOW_NAME = "CRM accounts (S3, hourly)"  # deploy/catalogue.example.yaml


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The running stack, fed once: a success, a failure and an Adobe alert for one flow."""
    running = Stack(tmp_path_factory.mktemp("e2e"))
    try:
        running.start()
        now_ms = int(time.time() * 1000)
        failed = run_object(
            run_id="e2e-failed-run",
            flow_id=SUCCESS_FLOW,
            status="failed",
            started_ms=now_ms - 60_000,
            completed_ms=now_ms,
            errors=["CONNECTOR-1001-500"],
        )
        for payload in (
            fixture_bytes("seed_success.json"),
            body(legacy("e2e-failed", failed)),
            body(alert(status="FIRING", flow_id=SUCCESS_FLOW)),
        ):
            assert running.deliver(payload) == 200
        running.fed_at = time.monotonic()  # type: ignore[attr-defined]
        yield running
    except BaseException:
        print(running.logs())
        raise
    finally:
        running.stop()


def test_failed_run_reaches_the_receiver_with_the_flow_name(stack: Stack) -> None:
    """A failed run of a catalogued flow pages through Alertmanager, naming the flow."""

    def paged() -> bool:
        return any(
            a["labels"].get("alertname") == "AepFlowRunFailed"
            and a["labels"].get("flow_id") == SUCCESS_FLOW
            for a in stack.receiver.alerts()
        )

    waited = wait_for(paged, "AepFlowRunFailed at the receiver", timeout=90)
    elapsed = time.monotonic() - stack.fed_at  # type: ignore[attr-defined]
    print(f"AepFlowRunFailed reached the receiver {elapsed:.1f}s after the delivery")
    pages = stack.receiver.alerts()
    page = next(a for a in pages if a["labels"]["alertname"] == "AepFlowRunFailed")
    assert page["labels"]["flow_name"] == FLOW_NAME
    assert page["labels"]["sandbox"] == "prod"
    assert FLOW_NAME in page["annotations"]["description"]
    assert page["annotations"]["runbook_url"].endswith("#runbook-aepflowrunfailed")
    assert waited < 90


def test_adobe_alert_firing_reaches_the_receiver(stack: Stack) -> None:
    """Adobe's own delay alert becomes AepFlowAdobeAlertFiring at the receiver."""

    def paged() -> bool:
        return any(
            a["labels"].get("alertname") == "AepFlowAdobeAlertFiring"
            for a in stack.receiver.alerts()
        )

    wait_for(paged, "AepFlowAdobeAlertFiring at the receiver", timeout=90)


def test_every_dashboard_query_runs_and_fed_panels_have_data(stack: Stack) -> None:
    """Each panel query is valid PromQL for the real Prometheus; the fed ones return data."""
    # At least two scrapes after the feed, so rates and increases have two points.
    wait_for(
        lambda: time.monotonic() - stack.fed_at > 5,  # type: ignore[attr-defined]
        "two scrapes after the feed",
        timeout=30,
    )
    values = {
        "__rate_interval": "15s",
        "__interval": "1s",
        "__range": "5m",
        "sandbox": "prod",
        "flow": SUCCESS_FLOW,
        "instance": ".*",
        "cluster": ".*",
        "datasource": "prometheus",
    }
    empty = []
    checked = 0
    for query in fed_queries():
        # The health table's day-long subqueries step every 5m (cheap on a real fleet); this
        # Prometheus has seconds of history, so step them at the scrape interval instead.
        expr = substitute_variables(query.expr, values).replace(":5m]", ":1s]")
        series = stack.query_any(expr, instant=query.instant, window=300)
        checked += 1
        if query.expects_data and series == 0:
            empty.append(f"{query.dashboard_uid} / {query.panel_title}: {expr}")
    print(f"{checked} panel queries evaluated")
    assert checked > 50
    assert empty == [], "panels the fed scenario should fill returned nothing:\n" + "\n".join(empty)


def test_prometheus_loaded_every_shipped_rule(stack: Stack) -> None:
    """Prometheus loaded the shipped rule files without errors."""
    groups = http_json(f"{stack.prometheus_url}/api/v1/rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules
    assert all(rule["health"] == "ok" for rule in rules), [
        (rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"
    ]
    assert Path(__file__).exists()
