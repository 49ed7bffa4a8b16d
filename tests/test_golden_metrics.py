"""/metrics after every fixture is the same, byte for byte, as the recorded golden exposition.

The golden files were recorded before the ingest pipeline was restructured; a change to them is
a user-visible change and must be deliberate (regenerate with AEP_UPDATE_GOLDEN=1).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, MakeClient

GOLDEN = FIXTURES / "golden"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# Lines that depend on the process or on wall-clock time, not on what was delivered.
_VOLATILE = re.compile(
    rb"^(process_|python_|aep_exporter_delivery_duration_seconds)"
    rb"|^# (HELP|TYPE) (process_|python_)"
    rb"|^[a-z_]+_created[{ ]"
)
# The interpreter that runs the tests, not the exposition's shape.
_PYTHON_VERSION = re.compile(rb'python_version="[^"]*"')
CATALOGUE = """\
flows:
  - flow_id: 1c6f1047-dcaf-48fe-af10-47dcaf08feaf
    sandbox: prod
    name: CRM accounts
    owner: data-platform
    source: s3
    expected_interval: 1h
    severity: critical
  - flow_id: never-reported
    sandbox: dev
    name: Quiet flow
"""


def _stable(exposition: bytes) -> bytes:
    lines = exposition.splitlines(keepends=True)
    kept = b"".join(line for line in lines if not _VOLATILE.match(line))
    return _PYTHON_VERSION.sub(b'python_version="3.x"', kept)


@pytest.mark.parametrize(
    ("accept", "golden"), [("", "metrics.txt"), (OPENMETRICS, "metrics.openmetrics")]
)
async def test_exposition_matches_golden(
    make_client: MakeClient, tmp_path: Path, accept: str, golden: str
) -> None:
    """Every fixture posted in name order, twice, exposes exactly the recorded series."""
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(CATALOGUE)
    client, _, _ = await make_client(catalogue_path=catalogue)
    # Twice: the second pass is all duplicates.
    for fixture in sorted(FIXTURES.glob("*.json")) * 2:
        response = await client.post("/webhook", data=fixture.read_bytes())
        assert response.status == 200, (fixture.name, await response.text())
    headers = {"Accept": accept} if accept else {}
    exposition = _stable(await (await client.get("/metrics", headers=headers)).read())
    path = GOLDEN / golden
    if os.environ.get("AEP_UPDATE_GOLDEN") == "1":
        path.write_bytes(exposition)
    assert exposition == path.read_bytes()
