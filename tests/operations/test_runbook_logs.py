"""Every log line a README runbook promises (its `**Log:**` marker) is emitted by a real process."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import FIXTURES
from tests.operations.test_store_faults import limit_file_size, padding
from tests.payload_builders import body, legacy, run_object
from tests.support import ExporterProcess, damage_table, wait_for

README = Path(__file__).resolve().parents[2] / "README.md"
# `**Log:** WARNING `flow run failed`, fields `sandbox`, `flow_id`, ...` (wrapped anywhere).
MARKER = re.compile(
    r"\*\*Log:\*\*\s+(DEBUG|INFO|WARNING|ERROR)\s+`([^`]+)`,\s+fields?\s+((?:`[a-z_]+`,?\s*)+)"
)
EXIT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Promise:
    """One runbook's promised line: level, fixed message and the fields it carries."""

    runbook: str
    level: str
    msg: str
    fields: tuple[str, ...]


def runbook_promises(text: str) -> list[Promise]:
    """The `**Log:**` markers of every "### Runbook: NAME" section."""
    promises = []
    for section in text.split("\n### Runbook: ")[1:]:
        name, _, content = section.partition("\n")
        content = content.split("\n## ", 1)[0]
        for level, msg, names in MARKER.findall(" ".join(content.split())):
            fields = tuple(re.findall(r"`([a-z_]+)`", names))
            promises.append(Promise(name.strip(), level, msg, fields))
    return promises


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The process's log: one JSON object per line (no other line is allowed)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_the_marker_parser_reads_wrapped_markers() -> None:
    """A marker wrapped over lines yields its level, message and every field."""
    text = "\n### Runbook: X\n\n**Log:** ERROR `it broke`, fields `a`,\n`b_c` (then more).\n"
    assert runbook_promises(text) == [Promise("X", "ERROR", "it broke", ("a", "b_c"))]


def test_the_runbooks_promise_lines() -> None:
    """The alert runbooks that send the reader to the log say which line to look for."""
    named = {promise.runbook for promise in runbook_promises(README.read_text())}
    assert {"AepFlowRunFailed", "AepFlowExporterDeadLetters"} <= named
    assert {"AepFlowExporterDeliveriesRejected", "AepFlowExporterStoreNotReady"} <= named


async def test_every_promised_line_is_emitted(tmp_path: Path) -> None:
    """A failed run, a dead letter, a refused delivery, a full disk and a damaged store each log
    the line their runbook names, with every field it names, as JSON."""
    state = tmp_path / "state.db"
    flags = ("--insecure-accept-unsigned", "--log-format", "json")
    with ExporterProcess(state, *flags, preexec=limit_file_size) as service:
        async with aiohttp.ClientSession() as session:
            failure = (FIXTURES / "seed_failure.json").read_bytes()
            for payload, status in ((failure, 200), (b"not json", 400), (padding(0), 200)):
                async with session.post(service.url + "/webhook", data=payload) as response:
                    assert response.status == status, await response.text()
            for number in range(1, 400):
                async with session.post(service.url + "/webhook", data=padding(number)) as response:
                    if response.status == 503:
                        break
            assert response.status == 503, "the file-size limit was never reached"
        assert service.terminate() == 0
    lines = json_lines(service.log_path)

    damage_table(state, "dedup_keys")
    refused = ExporterProcess(state, "--log-format", "json")
    refused.spawn()
    try:
        assert refused.process is not None
        process = refused.process
        wait_for(lambda: process.poll() is not None, "serve to refuse", EXIT_TIMEOUT)
    finally:
        refused.stop()
    lines += json_lines(refused.log_path)

    for promise in runbook_promises(README.read_text()):
        found = [
            line
            for line in lines
            if line["msg"] == promise.msg and line["level"] == promise.level.lower()
        ]
        assert found, f"{promise.runbook}: no {promise.level} line {promise.msg!r}"
        assert [f for f in promise.fields if f not in found[0]] == [], (promise, found[0])
    failed = next(line for line in lines if line["msg"] == "flow run failed")
    assert failed["error_codes"] == ["CONNECTOR-2001-500", "133"]
    assert failed["flow_id"] == "cf4fce79-8822-456d-8fce-798822556dc6"


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a client that crashed or timed out does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("access_log", [False, True], ids=["quiet", "access_log"])
async def test_client_disconnects_are_one_debug_line_without_traceback(
    tmp_path: Path, access_log: bool
) -> None:
    """A /metrics reader that stops reading and a sender that drops mid-body log only DEBUG
    `client disconnected` lines; with the access log on, each answer is a `request` line."""
    flags = ["--insecure-accept-unsigned", "--log-format", "json", "--log-level", "DEBUG"]
    flags += ["--access-log"] if access_log else []
    with ExporterProcess(tmp_path / "state.db", *flags) as service:
        # Enough flows that /metrics (about 800 kB) takes a while to write.
        async with aiohttp.ClientSession() as session:
            for number in range(300):
                run = run_object(run_id=f"r{number}", flow_id=f"flow-{number}")
                document = legacy(f"e{number}", run)
                async with session.post(service.url + "/webhook", data=body(document)) as answer:
                    assert answer.status == 200
        # Reset at once: /metrics is still being written (a later reset can find it all
        # buffered by the kernel). Tried a few times, since the reset may also beat the request.
        for _ in range(20):
            scraper = socket.create_connection(("127.0.0.1", service.port))
            scraper.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            reset(scraper)
            await asyncio.sleep(0.2)
            if "closing transport" in service.log_path.read_text():
                break
        sender = socket.create_connection(("127.0.0.1", service.port))
        sender.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        await asyncio.sleep(0.3)
        reset(sender)

        def both_logged() -> bool:
            text = service.log_path.read_text()
            return "closing transport" in text and "Connection reset by peer" in text

        wait_for(both_logged, "both disconnects logged", 20.0)
        assert service.terminate() == 0
    lines = json_lines(service.log_path)
    assert [line for line in lines if line["level"] == "error"] == []
    assert [line for line in lines if "exception" in line] == []
    disconnects = [line for line in lines if line["msg"] == "client disconnected"]
    assert {line["level"] for line in disconnects} == {"debug"}
    requests = [line for line in lines if line["msg"] == "request"]
    if access_log:
        assert len(requests) >= 300
        assert {"peer", "method", "path", "status", "duration_seconds"} <= requests[0].keys()
    else:
        assert requests == []
