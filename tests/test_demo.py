"""`make demo` feeds every sample, signed, to a verifying exporter and shows real metrics."""

from __future__ import annotations

import sys

from tests.conftest import FIXTURES
from tests.support import free_port, run_tool


def test_demo_once_records_every_sample_with_verification_on() -> None:
    """Every sample gets 200 through real signature checks, and metric lines are printed."""
    result = run_tool(
        [sys.executable, "-m", "exporter.demo", "--once", "--no-monitoring",
         "--port", str(free_port()), "--samples", str(FIXTURES)],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    fed = [line for line in result.stdout.splitlines() if ".json " in line]
    assert len(fed) == len(list(FIXTURES.glob("*.json")))
    assert all(" 200 " in line for line in fed), fed
    assert "signature verification on" in result.stdout
    assert 'aep_flow_runs_total{flow_id="1c6f1047' in result.stdout
