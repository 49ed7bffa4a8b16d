"""A real `aep-flow-exporter serve` subprocess on a loopback port, for the operations tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    """A loopback port that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """Starts, signals and stops one exporter process; never touches processes it did not start."""

    def __init__(
        self,
        state_path: Path,
        *extra: str,
        preexec: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.state_path = state_path
        self.port = free_port()
        self.extra = extra
        self.preexec = preexec
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = state_path.with_suffix(f".{self.port}.log")

    @property
    def url(self) -> str:
        """Base URL of the service."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process (it becomes ready asynchronously; see wait_ready)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AEP_EXPORTER_")}
        env.update(self.env)
        command = [
            sys.executable, "-m", "exporter", "serve",
            "--listen-address", f"127.0.0.1:{self.port}",
            "--state-path", str(self.state_path),
            "--log-format", "logfmt",
            *self.extra,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=log,
                env=env,
                preexec_fn=self.preexec,  # noqa: PLW1509
            )

    async def wait_ready(self, limit: float = 15.0) -> None:
        """Wait until /readyz answers 200 (bounded)."""
        deadline = time.monotonic() + limit
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"exporter exited: {self.log_path.read_text()[-2000:]}")
                try:
                    async with session.get(self.url + "/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"exporter not ready in {limit}s: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Make sure the process is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by name and sorted labels."""
        async with aiohttp.ClientSession() as session, session.get(self.url + "/metrics") as r:
            text = await r.text()
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def __enter__(self) -> Service:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
