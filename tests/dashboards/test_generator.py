"""The committed dashboards are exactly what grafana/build.py generates."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from grafana import build
from tests.dashboards.queries import DASHBOARD_DIR
from tests.support import run_tool

ROOT = Path(__file__).resolve().parents[2]


def test_committed_json_equals_generator_output() -> None:
    """Every committed dashboard file is byte-for-byte the generator's output, and no more."""
    generated = build.rendered_files()
    committed = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARD_DIR.glob("*.json")}
    assert sorted(committed) == sorted(generated)
    for name, text in generated.items():
        assert committed[name] == text, f"{name} is stale: run python grafana/build.py"


def test_build_script_check_passes() -> None:
    """`python grafana/build.py --check` runs standalone and finds nothing stale."""
    result = run_tool([sys.executable, "grafana/build.py", "--check"], cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_build_script_writes_and_detects_stale_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script writes every dashboard, and --check reports a file edited by hand."""
    monkeypatch.setattr(build, "OUT_DIR", tmp_path)
    assert build.main([]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(build.rendered_files())
    assert build.main(["--check"]) == 0
    edited = tmp_path / "aep-flow-detail.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace("p95", "p96"), encoding="utf-8")
    assert build.main(["--check"]) == 1
