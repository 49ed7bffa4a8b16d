"""`make demo` feeds every sample, signed, to a verifying exporter and shows real metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.demo import retimed
from tests.conftest import FIXTURES
from tests.support import Child, free_port, require_tool, run_tool, wait_for


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


def test_sigterm_stops_every_child_and_removes_the_temporary_directory(tmp_path: Path) -> None:
    """SIGTERM to the demo stops the exporter, Prometheus and Alertmanager it started (by
    PID: none is left running) and removes its temporary directory."""
    require_tool("prometheus", "prometheus-alertmanager")
    port, prometheus, alertmanager = free_port(), free_port(), free_port()
    demo = Child(
        "demo",
        [sys.executable, "-m", "exporter.demo", "--port", str(port), "--samples", str(FIXTURES),
         "--prometheus-port", str(prometheus), "--alertmanager-port", str(alertmanager)],
        port=port,
        ready_path="/readyz",
        log_path=tmp_path / "demo.log",
    )  # fmt: skip
    with demo:
        wait_for(lambda: "Ctrl-C stops" in demo.log_path.read_text(), "the demo to settle", 60.0)
        output = demo.log_path.read_text()
        listed, state = re.search(r"children: ([\d ]+)", output), re.search(r"in (\S+)\)", output)
        assert listed is not None, output
        assert state is not None, output
        children, work = [int(pid) for pid in listed[1].split()], Path(state[1])
        assert len(children) == 3
        assert work.is_dir()
        assert demo.terminate() == 0
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not work.exists()


def test_retimed_moves_each_unit_to_now_and_keeps_durations() -> None:
    """The seed success (run in seconds, envelope in milliseconds) ends at the given time in
    both units; its duration, untouchable values and a batch's documents each keep their own."""
    newest = 1_800_000_000.0
    moved = json.loads(retimed((FIXTURES / "seed_success.json").read_bytes(), newest))
    duration = moved["event"]["metrics"]["durationSummary"]
    assert duration == {"startedAtUTC": 1_800_000_000, "completedAtUTC": 1_800_000_000}
    original = json.loads((FIXTURES / "seed_success.json").read_text())["event"]
    shift = moved["event"]["updatedAt"] - original["updatedAt"]
    assert moved["event"]["createdAt"] - original["createdAt"] == shift
    assert 1_799_999_000_000 < moved["event"]["updatedAt"] <= 1_800_000_000_000
    bad = json.loads(retimed((FIXTURES / "bad_times.json").read_bytes(), newest))
    assert "yesterday" in json.dumps(bad)
    batch = json.loads(
        retimed(b'[{"createdAt": "2020-01-01T00:00:00Z"}, {"time": 1600000000}]', newest)
    )
    assert batch == [{"createdAt": "2027-01-15T08:00:00.000Z"}, {"time": 1_800_000_000}]
    assert retimed(b"not json", newest) == b"not json"


def test_demo_shows_notifications_by_source(demo: subprocess.CompletedProcess[str]) -> None:
    """The journal brings a run and one sample again (a duplicate), reconciliation a run no
    notification brought: each shows under its source."""
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    shown = 'aep_exporter_notifications_total{kind="run",outcome="%s",source="%s"} 1.0'
    assert shown % ("recorded", "journal") in out
    assert shown % ("duplicate", "journal") in out
    assert shown % ("recorded", "flow_service") in out
