"""The command line: check-payload, check-config, dead letters, backup, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.normalize import normalize_body
from exporter.recorder import Limits, Recorder
from exporter.stores.sqlite import SQLiteStore
from tests.conftest import FAILURE_FLOW, FIXTURES, SUCCESS_FLOW
from tests.payload_builders import body


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AEP_EXPORTER_* from the caller's environment; state in a temporary directory."""
    for name in list(os.environ):
        if name.startswith("AEP_EXPORTER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AEP_EXPORTER_STATE_PATH", str(tmp_path / "state.db"))


def test_check_payload_prints_the_seed_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """check-payload --format json prints one object per document with the seed values."""
    files = [str(FIXTURES / "seed_success.json"), str(FIXTURES / "seed_failure.json")]
    assert main(["check-payload", "--format", "json", *files]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [entry["kind"] for entry in lines] == ["run", "run"]
    success, failure = (entry["event"] for entry in lines)
    assert success["flow"] == {"sandbox": "prod", "flow_id": SUCCESS_FLOW}
    assert success["duration_seconds"] == 0
    assert (success["input_records"], success["output_records"]) == (100, 70)
    assert failure["flow"]["flow_id"] == FAILURE_FLOW
    assert failure["completed_at"] == 1597434157.567
    assert failure["duration_seconds"] is None
    assert failure["input_bytes"] is None
    assert [e["code"] for e in failure["errors"]] == ["CONNECTOR-2001-500", "133"]
    changes = lines[1]["metric_changes"]
    assert any(c.startswith("aep_flow_runs_total{") and 'status="failed"' in c for c in changes)
    assert any('error_code="133"' in c for c in changes)


def test_check_payload_text_and_unknown_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Text output names each document; an unknown document exits 1 with its reason."""
    odd = tmp_path / "odd.json"
    odd.write_bytes(body({"hello": "world"}))
    assert main(["check-payload", str(FIXTURES / "seed_success.json"), str(odd)]) == 1
    captured = capsys.readouterr()
    assert "seed_success.json #1: run\n" in captured.out
    assert "    aep_flow_runs_total{" in captured.out
    assert "not understood" in captured.err


def test_check_payload_text_reads_like_a_tool(capsys: pytest.CaptureFixture[str]) -> None:
    """Text output shows values, not Python reprs, and times at full precision."""
    assert main(["check-payload", str(FIXTURES / "seed_failure.json")]) == 0
    out = capsys.readouterr().out
    assert "completed at:        2020-08-14T19:42:37.567Z (1597434157.567)" in out
    assert "activities:          promotionActivity failed" in out
    assert f"flow:                prod / {FAILURE_FLOW}" in out
    assert 'status="failed"} = 1597434157.567' in out
    assert "<" not in out
    assert "e+09" not in out


def test_check_payload_rejects_non_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that is not JSON exits 1 and says so."""
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe not json")
    assert main(["check-payload", str(bad)]) == 1
    assert "not usable JSON" in capsys.readouterr().err


def test_check_config_masks_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config prints effective settings, flags over env, with the secret masked."""
    monkeypatch.setenv("AEP_EXPORTER_CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("AEP_EXPORTER_CLIENT_IDS", "abc,def")
    assert main(["check-config", "--flow-ttl", "7d"]) == 0
    out = capsys.readouterr().out
    assert "AEP_EXPORTER_CLIENT_SECRET=<set>" in out
    assert "s3cret" not in out
    assert "AEP_EXPORTER_CLIENT_IDS=abc,def" in out
    assert "AEP_EXPORTER_FLOW_TTL=7d" in out


def test_invalid_config_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad setting prints one readable line naming it and exits 2."""
    monkeypatch.setenv("AEP_EXPORTER_DEDUP_WINDOW", "three days")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "AEP_EXPORTER_DEDUP_WINDOW" in err


def test_http_key_base_url_only_on_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    """http:// key URLs are refused unless they point at loopback."""
    assert main(["check-config", "--public-key-base-url", "http://keys.example"]) == 2
    assert "loopback" in capsys.readouterr().err
    assert main(["check-config", "--public-key-base-url", "http://127.0.0.1:8080"]) == 0


def test_bad_catalogue_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config validates the catalogue and names the bad entry."""
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text("flows:\n  - flow_id: x\n    expected_interval: soon\n")
    assert main(["check-config", "--catalogue-path", str(catalogue)]) == 2
    err = capsys.readouterr().err
    assert "catalogue" in err
    assert "flows.0" in err


def _dead_letter_store(path: Path) -> None:
    async def fill() -> None:
        recorder = Recorder(SQLiteStore(path, bucket_count=1), Limits())
        await recorder.open()
        docs = normalize_body(body({"mystery": 1, "eventid": "m-1"}), received_at=1.0)
        await recorder.record(docs, 1.0)
        await recorder.close()

    asyncio.run(fill())


def test_dead_letters_list_show_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """dead-letters lists, shows and purges what the store holds."""
    _dead_letter_store(tmp_path / "state.db")
    assert main(["dead-letters", "list"]) == 0
    listed = capsys.readouterr().out
    assert "m-1" in listed
    letter_id = listed.split("\t")[0]
    assert main(["dead-letters", "show", letter_id]) == 0
    assert '"mystery"' in capsys.readouterr().out
    assert main(["dead-letters", "replay", "--all"]) == 1  # still not understood
    assert "still not understood" in capsys.readouterr().out
    assert main(["dead-letters", "purge"]) == 0
    assert "purged 1" in capsys.readouterr().out
    assert main(["dead-letters", "list"]) == 0
    assert capsys.readouterr().out == ""


def test_backup_is_a_usable_state_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """backup writes a consistent copy that opens as a state store; it never overwrites."""
    _dead_letter_store(tmp_path / "state.db")
    target = tmp_path / "backup.db"
    assert main(["backup", str(target)]) == 0
    copy = SQLiteStore(target, bucket_count=1)
    copy.open()
    assert copy.count_dead_letters() == 1
    copy.close()
    assert main(["backup", str(target)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err


def test_check_config_prints_duration_defaults_as_the_readme_writes_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every duration default check-config prints is spelled as in the README table."""
    for name in [name for name in os.environ if name.startswith("AEP_EXPORTER_")]:
        monkeypatch.delenv(name)
    readme = (FIXTURES.parents[1] / "README.md").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^\| `(AEP_EXPORTER_\w+)`[^|]*\| `([^`]*)` \|", readme, re.M))
    assert main(["check-config"]) == 0
    printed = dict(
        line.split("=", 1) for line in capsys.readouterr().out.splitlines() if "=" in line
    )
    durations = [name for name, value in documented.items() if re.fullmatch(r"\d+[smhd]", value)]
    assert len(durations) >= 6
    assert {name: printed[name] for name in durations} == {
        name: documented[name] for name in durations
    }
