"""`make demo` feeds every sample, signed, to a verifying exporter and shows real metrics."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import FIXTURES
from tests.support import free_port, run_tool


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    """One `make demo --once` run, shared by the tests of this module."""
    return run_tool(
        [sys.executable, "-m", "exporter.demo", "--once", "--no-monitoring",
         "--port", str(free_port()), "--samples", str(FIXTURES)],
    )  # fmt: skip


def test_demo_once_records_every_sample_with_verification_on(
    demo: subprocess.CompletedProcess[str],
) -> None:
    """Every sample gets 200 through real signature checks, and metric lines are printed."""
    assert demo.returncode == 0, demo.stdout + demo.stderr
    fed = [line for line in demo.stdout.splitlines() if ".json " in line]
    assert len(fed) == len(list(FIXTURES.glob("*.json")))
    assert all(" 200 " in line for line in fed), fed
    assert "signature verification on" in demo.stdout
    assert 'aep_flow_runs_total{flow_id="1c6f1047' in demo.stdout


def test_demo_shows_flow_service_names_schedules_and_registration_health(
    demo: subprocess.CompletedProcess[str],
) -> None:
    """With the fake Adobe APIs the demo shows names, sources, intervals, states and health."""
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert 'flow_name="Loyalty members (SFTP)"' in out
    assert 'source="SFTP"' in out
    assert 'aep_flow_expected_interval_seconds{flow_id="7a3e4b1c' in out
    assert (
        'aep_flow_enabled{flow_id="9b8c7d6e-0000-4000-8000-0000000000d1",sandbox="prod"} 0.0' in out
    )
    assert 'webhook_status="verified"' in out
    assert "aep_events_registration_healthy{" in out


def test_demo_shows_notifications_by_source(demo: subprocess.CompletedProcess[str]) -> None:
    """The journal brings a run and one sample again (a duplicate), reconciliation a run no
    notification brought: each shows under its source."""
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    shown = 'aep_exporter_notifications_total{kind="run",outcome="%s",source="%s"} 1.0'
    assert shown % ("recorded", "journal") in out
    assert shown % ("duplicate", "journal") in out
    assert shown % ("recorded", "flow_service") in out
