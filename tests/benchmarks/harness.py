"""The processes we measure (exporter, aiohttp floor, pushgateway) and what we read of them."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.benchmarks.corpus import SigningKey

# What Prometheus 2.x/3.x sends when it scrapes (scrape_protocols default, gzip on).
PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
PROMETHEUS_HEADERS = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
PLAIN_HEADERS: dict[str, str] = {}
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
HTTP_TIMEOUT = 120.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A loopback port free right now (the process we start binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class Process:
    """A child process we started, stopped by its own PID only; its output goes to a log file."""

    def __init__(
        self, name: str, workdir: Path, ready_path: str, command: Callable[[int], list[str]]
    ) -> None:
        self.name = name
        self.port = free_port()
        self.workdir = workdir
        self._argv = command(self.port)
        self._ready_path = ready_path
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"
        self.startup_seconds = 0.0

    @property
    def pid(self) -> int:
        """The PID of the running process."""
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> Process:
        """Start and wait until `ready_path` answers 200; the wait is `startup_seconds`."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            started = time.perf_counter()
            self._proc = subprocess.Popen(
                self._argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = started + READY_TIMEOUT
        while time.perf_counter() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up:\n{self.log_tail()}")
            try:
                if fetch(self.port, self._ready_path).status == 200:
                    self.startup_seconds = time.perf_counter() - started
                    return self
            except OSError:
                pass
            time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {READY_TIMEOUT:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time (our own child only)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the process's output, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Process:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def exporter_process(
    workdir: Path,
    key: SigningKey,
    *,
    state: Path | None = None,
    name: str = "exporter",
    profile: Path | None = None,
) -> Process:
    """`aep-flow-exporter serve` on loopback with a temp state file (a copy of `state`).

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
    return Process(
        name,
        workdir,
        "/readyz",
        lambda port: [
            *program,
            "serve",
            "--listen-address",
            f"127.0.0.1:{port}",
            "--state-path",
            str(state_path),
            "--pinned-keys-dir",
            str(key.pinned_dir),
            "--log-level",
            "WARNING",
        ],
    )


def floor_process(workdir: Path) -> Process:
    """The floor: a bare aiohttp handler that reads the body and answers 200."""
    return Process(
        "floor",
        workdir,
        "/healthz",
        lambda port: [sys.executable, "-m", "tests.benchmarks.floor", str(port)],
    )


def pushgateway_process(workdir: Path) -> Process:
    """Debian's prometheus-pushgateway on loopback, keeping nothing on disk."""
    return Process(
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
