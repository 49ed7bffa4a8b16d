"""A damaged state file is never served: serve and the store commands refuse with one line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.domain import FlowKey
from exporter.records import FlowState
from exporter.stores.sqlite import SQLiteStore
from tests.support import (
    ExporterProcess,
    damage_table,
    http_ok,
    overwrite_flow_row,
    run_tool,
    wait_for,
)

FLOW = FlowKey("prod", "flow-a")
EXIT_TIMEOUT = 30.0


def populate(path: Path) -> None:
    """A closed store with one counted flow and the keys of its runs."""
    store = SQLiteStore(path, bucket_count=1)
    store.open()
    state = FlowState.new(FLOW, 100.0, 1)
    state.runs["success"] = 3
    with store.transaction():
        store.put_flows([state])
        assert store.claim_keys([f"event:{n}" for n in range(50)], 100.0)
    store.close()


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    # dedup_keys: a page the start-up load never reads, so only an integrity check finds it.
    "an overwritten page": (
        lambda path: damage_table(path, "dedup_keys"),
        "database disk image is malformed",
    ),
    "a flow row that is not JSON": (
        lambda path: overwrite_flow_row(path, "prod", "flow-a", '{"first_seen": 1'),
        "flow record sandbox=prod flow_id=flow-a: Expecting",
    ),
    "a flow row with a wrong field": (
        lambda path: overwrite_flow_row(
            path, "prod", "flow-a", json.dumps({"first_seen": 1, "last_received": "soon"})
        ),
        "flow record sandbox=prod flow_id=flow-a: last_received is not a finite number",
    ),
}


@pytest.fixture(params=sorted(DAMAGE))
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """A state file with one kind of damage, and what the refusal must say about it."""
    damage, problem = DAMAGE[request.param]
    path = tmp_path / "state.db"
    populate(path)
    damage(path)
    return path, problem


def assert_one_refusal(output: str, path: Path, problem: str) -> None:
    """Exactly one line tells what is damaged and how to recover; no traceback."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "damaged" in line]
    assert len(lines) == 1, output
    assert str(path) in lines[0]
    assert problem in lines[0]
    assert "aep-flow-exporter backup" in lines[0]
    assert "move the file aside" in lines[0]


def test_serve_refuses_a_damaged_store(damaged: tuple[Path, str]) -> None:
    """serve exits non-zero with one error line instead of becoming ready on a damaged store."""
    path, problem = damaged
    # Client ids set: no start-up warning, so the refusal is the only line above info.
    service = ExporterProcess(path, settings={"AEP_EXPORTER_CLIENT_IDS": "test-client"})
    service.spawn()
    try:

        def exited() -> bool:
            assert service.process is not None
            if service.process.poll() is not None:
                return True
            assert not http_ok(service.url + "/readyz"), "a damaged store is served as ready"
            return False

        wait_for(exited, "serve to refuse the damaged store", EXIT_TIMEOUT)
    finally:
        service.stop()
    assert service.process is not None
    assert service.process.returncode == 1
    output = service.log_path.read_text()
    assert_one_refusal(output, path, problem)
    assert [line for line in output.splitlines() if "level=error" in line] == [
        line for line in output.splitlines() if "damaged" in line
    ]


@pytest.mark.parametrize(
    "command", [["backup", "BACKUP"], ["dead-letters", "list"]], ids=["backup", "dead-letters"]
)
def test_store_commands_refuse_a_damaged_store(
    damaged: tuple[Path, str], command: list[str]
) -> None:
    """backup and dead-letters exit 1 with one readable line; no backup file is written."""
    path, problem = damaged
    target = path.with_name("backup.db")
    argv = [target if arg == "BACKUP" else arg for arg in command]
    done = run_tool([sys.executable, "-m", "exporter", *argv, "--state-path", path])
    assert done.returncode == 1, done
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert_one_refusal(done.stderr, path, problem)
    assert not target.exists()
