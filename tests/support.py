"""What tests and benchmarks share: free ports, required tools, bounded waits, child processes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import ENV_PREFIX
from exporter.logs import LogfmtFormatter

REPO = Path(__file__).resolve().parents[1]
TOOL_TIMEOUT = 120.0
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    """A loopback port that is free right now (the process we start binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def in_ci() -> bool:
    """Whether we run in CI (`CI=true`), where every tool the tests drive is installed."""
    return os.environ.get("CI", "").lower() in ("true", "1")


def require_tool(*names: str) -> str:
    """Path of the first of `names` installed; skip without one, but fail in CI."""
    for name in names:
        # PATH first; then the venv's bin, where a tool installed from a wheel lands.
        path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
        if path is not None:
            return path
    wanted = " or ".join(names)
    if in_ci():
        pytest.fail(f"{wanted} is required in CI (.ci/run installs it) but is not installed")
    pytest.skip(f"{wanted} is not installed (.ci/run installs it; with CI=true this fails)")


def wait_for(
    condition: Callable[[], bool], what: str, timeout: float, *, interval: float = 0.1
) -> float:
    """Poll `condition` (OSError counts as not yet) until true; the seconds it took; bounded."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if condition():
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def clean_environ(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any AEP_EXPORTER_* variable, plus `settings`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    return env | dict(settings or {})


def run_tool(
    args: Sequence[str | Path], *, cwd: Path = REPO, timeout: float = TOOL_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a program to completion (bounded) with a clean environment, capturing its output."""
    return subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def http_json(url: str, body: object | None = None, *, timeout: float = 5.0) -> Any:
    """GET (or POST `body` as JSON to) a loopback URL and decode the JSON answer, if any."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    return json.loads(text) if text else None


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether GET url answers 200 (errors raise OSError)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bool(response.status == 200)


class Child:
    """A process we started on a loopback port: explicit environment, output to a log file.

    It is stopped by its own PID only; `with` starts it, waits until ready and stops it.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        ready_path: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
        ready_timeout: float = READY_TIMEOUT,
        poll: float = 0.05,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.ready_path = ready_path
        self.log_path = log_path
        self.env = clean_environ() if env is None else dict(env)
        self.preexec = preexec
        self.ready_timeout = ready_timeout
        self.poll = poll
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        """Base URL of the process's listener."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The PID of the process we started."""
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def spawn(self) -> Self:
        """Start the process without waiting for it."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                preexec_fn=self.preexec,  # noqa: PLW1509
            )
        return self

    def start(self) -> Self:
        """Start and wait until `ready_path` answers 200; the wait is `startup_seconds`."""
        started = time.monotonic()
        self.spawn()
        try:
            wait_for(
                self._ready, f"{self.name} to be ready", self.ready_timeout, interval=self.poll
            )
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}:\n{self.log_tail()}") from None
        self.startup_seconds = time.monotonic() - started
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with status {self.process.returncode}")
        return http_ok(self.url + self.ready_path, timeout=1.0)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Make sure the process is gone: SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.terminate(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the process's output, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ExporterProcess(Child):
    """`aep-flow-exporter serve` on a free loopback port with exactly these flags and settings."""

    def __init__(
        self,
        state_path: Path,
        *flags: str,
        settings: Mapping[str, str] | None = None,
        program: Sequence[str] = (sys.executable, "-m", "exporter"),
        log_path: Path | None = None,
        name: str = "exporter",
        preexec: Callable[[], None] | None = None,
        ready_timeout: float = READY_TIMEOUT,
        poll: float = 0.05,
    ) -> None:
        port = free_port()
        self.state_path = state_path
        argv = [
            *program, "serve",
            "--listen-address", f"127.0.0.1:{port}",
            "--state-path", str(state_path),
            "--log-format", "logfmt",
            *flags,
        ]  # fmt: skip
        super().__init__(
            name,
            argv,
            port=port,
            ready_path="/readyz",
            log_path=log_path or state_path.with_suffix(f".{port}.log"),
            env=clean_environ(settings),
            preexec=preexec,
            ready_timeout=ready_timeout,
            poll=poll,
        )

    def metrics(self) -> Samples:
        """Every sample of /metrics, keyed by name and sorted labels."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples


def damage_table(path: Path, table: str) -> None:
    """Overwrite the root page of `table` in a closed SQLite file, as a bad block would."""
    db = sqlite3.connect(path)
    try:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,))
        page = root.fetchone()[0]
    finally:
        db.close()  # the last connection checkpoints: everything is in the main file now
    with path.open("r+b") as handle:
        handle.seek((page - 1) * page_size)
        handle.write(b"\xa5" * page_size)


def overwrite_flow_row(path: Path, sandbox: str, flow_id: str, state: str) -> None:
    """Replace the stored JSON of one flow record in a closed SQLite file."""
    db = sqlite3.connect(path)
    try:
        with db:
            changed = db.execute(
                "UPDATE flows SET state = ? WHERE sandbox = ? AND flow_id = ?",
                (state, sandbox, flow_id),
            ).rowcount
    finally:
        db.close()
    assert changed == 1, f"no flow record {sandbox}/{flow_id} in {path}"


def alertmanager_process(binary: str, config: Path, workdir: Path, port: int = 0) -> Child:
    """Alertmanager with `config` on loopback (`port`, or a free one), data under workdir."""
    port = port or free_port()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={workdir / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    log_path = workdir / "alertmanager.log"
    return Child("alertmanager", argv, port=port, ready_path="/-/ready", log_path=log_path)


def log_text(records: Sequence[logging.LogRecord]) -> str:
    """Captured records as the logfmt lines the exporter writes, fields included."""
    formatter = LogfmtFormatter()
    return "\n".join(formatter.format(record) for record in records)
