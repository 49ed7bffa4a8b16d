"""A throwaway PostgreSQL cluster on loopback for tests: initdb, start and stop by PID.

PostgreSQL refuses to run as root, so as root (CI) the server runs as `nobody` via setpriv;
its data directory is a fresh temporary directory that user owns.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.support import STOP_TIMEOUT, free_port, require_tool, wait_for

USER = "aep"
PASSWORD = "test-secret-pw"
START_TIMEOUT = 30.0
_numbers = itertools.count(1)


def _as_postgres_user() -> list[str]:
    """The argv prefix running a server program unprivileged (nothing when we are not root)."""
    if os.geteuid() != 0:
        return []
    setpriv = require_tool("setpriv")
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


class PostgresCluster:
    """One cluster: `start()` (initdb on first use), `stop()` by the postmaster's PID."""

    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync
        self.initdb = require_tool("initdb")
        self.postgres = str(Path(self.initdb).resolve().parent / "postgres")
        if not Path(self.postgres).exists():
            self.postgres = require_tool("postgres")
        self.root = Path(tempfile.mkdtemp(prefix="aep-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody", "nogroup")
        self._initdb()

    def _initdb(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "nobody", "nogroup")
        subprocess.run(
            [*_as_postgres_user(), self.initdb, "-D", str(self.data), "-U", USER,
             f"--pwfile={pwfile}", "--auth=scram-sha-256", "--no-sync", "-E", "UTF8",
             "--locale=C"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def url(self, database: str = "postgres", *, password: bool = True) -> str:
        """A connection URL for `database` on this cluster."""
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*_as_postgres_user(), self.postgres, "-D", str(self.data),
                 "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                 "-c", "unix_socket_directories=", "-c", f"fsync={'on' if self.fsync else 'off'}",
                 "-c", "max_connections=100", "-c", "deadlock_timeout=200ms"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            wait_for(self._accepts, "PostgreSQL to accept connections", START_TIMEOUT)
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}:\n{self.log_path.read_text()[-2000:]}") from None

    def _accepts(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"postgres exited with status {self.process.returncode}")
        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """Fast shutdown by the postmaster's PID (SIGINT), SIGKILL if it does not end in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)

    def create_database(self) -> str:
        """A fresh empty database; its URL."""
        name = f"t{os.getpid()}_{next(_numbers)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def execute(self, sql: str) -> None:
        """Run one statement as the superuser on the `postgres` database."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.encode())

    def remove(self) -> None:
        """Stop, then delete the data directory."""
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)
