"""The processes we measure (exporter, aiohttp floor, pushgateway) and what we read of them."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.corpus import SigningKey
from tests.support import Child, ExporterProcess, free_port

# What Prometheus 2.x/3.x sends when it scrapes (scrape_protocols default, gzip on).
PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
PROMETHEUS_HEADERS = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
PLAIN_HEADERS: dict[str, str] = {}
READY_TIMEOUT = 120.0
# Fine-grained, since the wait is reported as start-up time.
READY_POLL = 0.005
HTTP_TIMEOUT = 120.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_BIN = Path(sys.executable).parent


def median(values: Sequence[float]) -> float:
    """The median; the figure every row reports."""
    return statistics.median(values)


@dataclass(frozen=True, slots=True)
class Fetched:
    """One HTTP answer: status, body as received (compressed if gzip) and wall time."""

    status: int
    body: bytes
    seconds: float


def fetch(
    port: int, path: str, headers: dict[str, str] | None = None, *, method: str = "GET"
) -> Fetched:
    """One request on a new loopback connection, timed from send to the last body byte."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        started = time.perf_counter()
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return Fetched(response.status, body, time.perf_counter() - started)
    finally:
        conn.close()


def _stat_cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc_pid_stat(5) are utime and stime; index 0 here is field 3.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a live process has used, all threads (/proc/PID/stat)."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time per thread id of a live process (/proc/PID/task/TID/stat)."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread may end while we look
            times[int(task.name)] = _stat_cpu(task / "stat")
    return times


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process (/proc/<pid>/statm)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_SIZE


def exporter_process(
    workdir: Path,
    key: SigningKey,
    *,
    state: Path | None = None,
    name: str = "exporter",
    profile: Path | None = None,
    flags: Sequence[str] = (),
    settings: Mapping[str, str] | None = None,
) -> ExporterProcess:
    """`aep-flow-exporter serve` on loopback with a temp state file (a copy of `state`), plus
    `flags`.

    With `profile`, the same CLI runs under cProfile, which writes there when it exits.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    state_path = workdir / "state.db"
    if state is not None:
        shutil.copyfile(state, state_path)
    if profile is None:
        program = [str(_BIN / "aep-flow-exporter")]
    else:
        program = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "exporter"]
    return ExporterProcess(
        state_path,
        "--pinned-keys-dir", str(key.pinned_dir),
        "--log-level", "WARNING",
        *flags,
        program=program,
        settings=settings,
        log_path=workdir / f"{name}.log",
        name=name,
        ready_timeout=READY_TIMEOUT,
        poll=READY_POLL,
    )  # fmt: skip


def _child(name: str, workdir: Path, ready_path: str, argv: Callable[[int], list[str]]) -> Child:
    port = free_port()
    return Child(
        name,
        argv(port),
        port=port,
        ready_path=ready_path,
        log_path=workdir / f"{name}.log",
        ready_timeout=READY_TIMEOUT,
        poll=READY_POLL,
    )


def floor_process(workdir: Path) -> Child:
    """The floor: a bare aiohttp handler that reads the body and answers 200."""
    return _child(
        "floor",
        workdir,
        "/healthz",
        lambda port: [sys.executable, "-m", "tests.benchmarks.floor", str(port)],
    )


def pushgateway_process(workdir: Path) -> Child:
    """Debian's prometheus-pushgateway on loopback, keeping nothing on disk."""
    return _child(
        "pushgateway",
        workdir,
        "/-/ready",
        lambda port: [
            shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway",
            f"--web.listen-address=127.0.0.1:{port}",
            "--persistence.file=",
            "--log.level=warn",
        ],
    )


_NOTIFICATIONS = re.compile(r"^aep_exporter_notifications_total\{([^}]*)\} (\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def notification_outcomes(port: int, source: str, kind: str | None = None) -> dict[str, float]:
    """aep_exporter_notifications_total of one source (and kind, else summed over kinds) by
    outcome, from the exporter's /metrics (labels in any order)."""
    totals: dict[str, float] = {}
    for labels, value in _NOTIFICATIONS.findall(fetch(port, "/metrics").body.decode()):
        label = dict(_LABEL.findall(labels))
        if label.get("source") == source and kind in (None, label.get("kind")):
            outcome = label.get("outcome", "")
            totals[outcome] = totals.get(outcome, 0.0) + float(value)
    return totals
