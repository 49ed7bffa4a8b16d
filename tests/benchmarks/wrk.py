"""Run Debian's wrk with deliveries.lua and read its result, including wrk's own CPU time."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks import harness

SCRIPT = Path(__file__).with_name("deliveries.lua")
# Longer than any stall we want to see: wrk drops answers slower than this from its latencies.
SOCKET_TIMEOUT = "20s"
# Loading a large request file into Lua takes a while before the first request.
LOAD_ALLOWANCE = 30.0


class WrkError(RuntimeError):
    """wrk failed or did not report."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run measured (latencies over every request wrk sent)."""

    loaded: int
    sent: int
    answered: int
    ok: int
    failed: int
    socket_errors: int
    seconds: float
    p50: float  # seconds, as every duration here
    p99: float
    max: float
    cpu_seconds: float  # wrk's user+system time from the first request to the last answer

    @property
    def rate(self) -> float:
        """Deliveries answered 200 per second."""
        return self.ok / self.seconds

    @property
    def exhausted(self) -> bool:
        """Whether every loaded delivery was sent (later requests were health checks)."""
        return self.sent >= self.loaded


def run(
    port: int,
    request_file: Path,
    *,
    limit: int,
    connections: int,
    seconds: float,
    send_all: bool = False,
    pace_ms: int = 0,
    until: threading.Event | None = None,
) -> WrkResult:
    """Run wrk for `seconds`, or with send_all until every delivery is answered (bounded), or
    with `until` until that event is set (at most `seconds`)."""
    wrk = shutil.which("wrk") or "/usr/bin/wrk"
    argv = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={SOCKET_TIMEOUT}",
        "-s",
        str(SCRIPT),
        f"http://127.0.0.1:{port}/webhook",
        "--",
        str(request_file),
        str(limit),
        "all" if send_all else "duration",
        str(pace_ms),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout = proc.stdout
    assert stdout is not None
    lines: list[tuple[float, str]] = []
    # wrk's own CPU time when sending starts and ends: loading the file is not load generation.
    cpu: dict[str, float] = {}
    finished = threading.Event()
    going = threading.Event()

    def read() -> None:
        for raw in stdout:
            line = raw.decode(errors="replace").strip()
            lines.append((time.perf_counter(), line))
            if line in ("GO", "DONE"):
                with contextlib.suppress(OSError):
                    cpu[line] = harness.cpu_seconds(proc.pid)
            if line == "GO":
                going.set()
            if line == "DONE":
                finished.set()

    reader = threading.Thread(target=read, name="wrk-output", daemon=True)
    reader.start()
    try:
        if send_all:
            # wrk's main thread sleeps for -d even after the script stops its thread.
            finished.wait(seconds + LOAD_ALLOWANCE)
            proc.send_signal(signal.SIGINT)
        elif until is not None:
            # The reader ends when wrk closes its output: wrk stopped on its own (-d passed).
            while reader.is_alive() and not until.wait(0.1):
                pass
            # wrk ignores SIGINT until it has loaded the file and started sending.
            loading = time.monotonic() + LOAD_ALLOWANCE
            while reader.is_alive() and not going.wait(0.1) and time.monotonic() < loading:
                pass
            if reader.is_alive():
                proc.send_signal(signal.SIGINT)  # not reaped yet: the PID is still wrk's
        # wait4 gives this child's own CPU use, not that of every child we have reaped.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    stdout.close()
    stderr = ""
    if proc.stderr is not None:
        with proc.stderr:
            stderr = proc.stderr.read().decode(errors="replace")
    report = [line for _, line in lines if line.startswith("{")]
    if proc.returncode != 0 or not report:
        output = "\n".join(line for _, line in lines)
        raise WrkError(f"wrk exited {proc.returncode}:\n{output}\n{stderr}")
    data = json.loads(report[-1])
    go = next((at for at, line in lines if line == "GO"), None)
    done = next((at for at, line in lines if line == "DONE"), None)
    if send_all:
        if go is None or done is None:
            raise WrkError(f"not every delivery was answered within {seconds:g} s: {data}")
        elapsed = done - go
    else:
        elapsed = data["duration_us"] / 1e6
    return WrkResult(
        loaded=data["loaded"],
        sent=data["sent"],
        answered=data["answered"],
        ok=data["ok"],
        failed=data["failed"],
        socket_errors=data["socket_errors"],
        seconds=elapsed,
        p50=data["p50_us"] / 1e6,
        p99=data["p99_us"] / 1e6,
        max=data["max_us"] / 1e6,
        cpu_seconds=cpu.get("DONE", usage.ru_utime + usage.ru_stime) - cpu.get("GO", 0.0),
    )
