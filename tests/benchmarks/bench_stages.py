"""Stages: CPU per delivery of each pipeline stage, the real handler driven in-process.

A child process (`python -m tests.benchmarks.bench_stages`) wraps the stage functions
(`tests/benchmarks/stages.py`), builds the exporter as `serve` does (pinned key, SQLite state,
group commit on its writer thread) and hands the request file's signed deliveries to the webhook
handler, 16 at a time, without sockets: what aiohttp's HTTP server costs is the floor's row.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from prometheus_client import CollectorRegistry

from exporter.config import Settings
from exporter.logs import configure_logging
from exporter.service import build_exporter
from tests.benchmarks import harness, stages
from tests.benchmarks.bench_ingest import send
from tests.benchmarks.context import Context
from tests.benchmarks.report import Section, Table
from tests.support import clean_environ

CHILD_TIMEOUT = 600.0
# Stages run on the store's writer thread, not the event loop's.
WRITER_STAGES = frozenset({"de-duplicate (claim keys)", "commit (apply, put flows, COMMIT)"})
_REST = "event loop, tasks and the driver (rest of the loop thread)"


def read_requests(path: Path, count: int) -> Iterator[tuple[dict[str, str], bytes]]:
    """(headers, body) of the first `count` raw requests of a request file."""
    with path.open("rb") as file:
        for _ in range(count):
            length = int(file.readline())
            head, _, body = file.read(length).partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")[1:]
            yield dict(line.split(": ", 1) for line in lines), body


async def _drive(
    requests: Path, pinned: Path, count: int, connections: int, workdir: Path
) -> dict[str, Any]:
    settings = Settings(state_path=workdir / "state.db", pinned_keys_dir=pinned)
    exporter = build_exporter(settings, CollectorRegistry())
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)

    def request(headers: dict[str, str], body: bytes) -> Any:
        payload = StreamReader(protocol, 2**16, loop=loop)
        payload.feed_data(body)
        payload.feed_eof()
        return make_mocked_request("POST", "/webhook", headers, payload=payload)

    await exporter.recorder.open()
    try:
        pending = iter([request(h, b) for h, b in read_requests(requests, count)])
        statuses: list[int] = []

        async def connection() -> None:
            for item in pending:
                statuses.append((await exporter.webhook.handle(item)).status)

        per_entry, per_child = stages.calibrate()
        thread_started, process_started = time.thread_time_ns(), time.process_time_ns()
        await asyncio.gather(*(connection() for _ in range(connections)))
        loop_thread = time.thread_time_ns() - thread_started
        process = time.process_time_ns() - process_started
    finally:
        await exporter.recorder.close()
    if statuses.count(200) != count:
        raise RuntimeError(f"not every delivery was accepted: {sorted(set(statuses))}")
    return {
        "stages": stages.totals(per_entry, per_child),
        "timer_ns": [per_entry, per_child],
        "loop_thread_ns": loop_thread,
        "process_ns": process,
    }


def _child(ctx: Context, count: int, *, timed: bool) -> dict[str, Any]:
    workdir = ctx.scratch("stages" if timed else "untimed")
    out = workdir / "stages.json"
    argv = [sys.executable, "-m", "tests.benchmarks.bench_stages"]
    argv += [str(ctx.request_file(count)), str(ctx.key.pinned_dir), str(count)]
    argv += [str(ctx.sizes.connections), str(out), "timed" if timed else "untimed"]
    # Its log lines (one per failed run, as `serve` writes them) go to a file, not the table.
    with (workdir / "stderr.log").open("wb") as stderr:
        child = subprocess.run(
            argv, check=False, timeout=CHILD_TIMEOUT, env=clean_environ(), stderr=stderr
        )
    if child.returncode != 0:
        tail = (workdir / "stderr.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"stages child exited {child.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _rest(result: dict[str, Any]) -> float:
    """The loop thread's time outside its stages, the timer's own reads taken off."""
    per_entry, per_child = result["timer_ns"]
    timed = result["stages"]
    entries = sum(timed[name]["entries"] for name in timed if name not in WRITER_STAGES)
    charged = sum(timed[name]["ns"] for name in timed if name not in WRITER_STAGES)
    return float(result["loop_thread_ns"] - charged - entries * (per_entry + per_child))


def run(ctx: Context) -> list[Section]:
    """Median per stage of `runs` child processes, each over the request file on an empty store."""
    sizes = ctx.sizes
    count = sizes.ingest_deliveries
    # Timed and untimed children alternate: the untimed ones give the true total, since the
    # timer's reads (a system call each here) are a cost of their own.
    runs, untimed = [], []
    for _ in range(sizes.runs):
        runs.append(_child(ctx, count, timed=True))
        untimed.append(_child(ctx, count, timed=False))
    with harness.floor_process(ctx.scratch("floor")) as floor:
        floor_run = send(ctx, floor, count, sizes.connections)

    def per_delivery(values: list[float]) -> float:
        return harness.median(values) / count / 1000  # ns per run → µs per delivery

    table = Table(
        f"Stages: CPU per delivery of each pipeline stage ({count} signed deliveries)",
        ["stage", "µs per delivery", "share"],
    )
    rows = {
        name: per_delivery([r["stages"][name]["ns"] for r in runs]) for name in runs[0]["stages"]
    }
    # The loop thread less its stages (and the timer's reads); the writer's stages are on its own.
    rows[_REST] = per_delivery([_rest(r) for r in runs])
    total = sum(rows.values())
    for name, micros in rows.items():
        table.rows.append([name, f"{micros:.0f}", f"{micros / total:.0%}"])
    table.rows.append(["**all threads, in-process (the rows' sum)**", f"**{total:.0f}**", ""])
    true_total = per_delivery([r["process_ns"] for r in untimed])
    table.rows.append(["all threads, in-process, a run without timers", f"{true_total:.0f}", ""])
    floor_cpu = floor_run.server_cpu / floor_run.result.ok * 1e6
    table.rows.append(
        ["for comparison: bare aiohttp floor process under wrk", f"{floor_cpu:.0f}", ""]
    )
    table.notes += [
        f"Median of {sizes.runs} runs, each a fresh process on an empty store: the webhook handler "
        f"(body read, signature, pipeline, group commit, response object) driven in-process, "
        f"{sizes.connections} deliveries in flight, no sockets. Load average at the end: "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}.",
        "Each stage's exclusive CPU time (`thread_time_ns`; nested stages are not counted twice, "
        "a coroutine's suspensions not at all), less what the timer's own reads add, measured "
        f"at the start ({runs[0]['timer_ns'][0]:.0f} ns per entry, "
        f"{runs[0]['timer_ns'][1]:.0f} ns per nested entry). De-duplicate and commit run on the "
        "store's writer thread, the rest on the event loop's. The rest of the loop thread is "
        "its CPU time less its stages. The run without timers is as many children again, "
        "alternating with the timed ones, with nothing patched: its `process_time_ns` per "
        "delivery, all threads (it differs from the rows' sum by the noise between runs and by "
        "what the timers cost beyond their reads, such as cache misses).",
        "The floor row is a bare aiohttp handler's whole process CPU per delivery under wrk: "
        "what HTTP parsing and answering cost, which the in-process run does not include.",
    ]
    return [table]


def main(argv: list[str]) -> None:
    """Child: measure the stages over the request file, write them as JSON."""
    if argv[5] == "timed":
        stages.install()  # before build_exporter binds the handler
    configure_logging("INFO", "json")  # as `serve` logs: the failed-run lines are part of it
    requests, pinned, out = Path(argv[0]), Path(argv[1]), Path(argv[4])
    result = asyncio.run(_drive(requests, pinned, int(argv[2]), int(argv[3]), out.parent))
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
