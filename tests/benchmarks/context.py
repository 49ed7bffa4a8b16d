"""What one benchmark run shares: its sizes, temp directory, signing key, request file, stores."""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.benchmarks.corpus import SigningKey, write_request_file
from tests.benchmarks.population import Population, populate


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each benchmark does (`--quick` shrinks everything)."""

    runs: int  # repetitions of each quick figure; every figure is their median
    slow_runs: int  # repetitions of figures that take many seconds each
    flow_counts: tuple[int, ...]  # scrape benchmark
    large_flows: int  # memory, start-up, latency under scrape
    ingest_deliveries: int  # per ingest run
    burst_deliveries: int
    latency_seconds: float  # per latency-under-scrape run (slow_runs of each kind)
    journal_events: int  # in the fake's journal, caught up by a fresh exporter
    connections: int = 16
    burst_connections: int = 64
    scrape_interval: float = 5.0


FULL = Sizes(
    runs=5,
    slow_runs=3,
    flow_counts=(100, 1_000, 10_000),
    large_flows=10_000,
    ingest_deliveries=15_000,
    burst_deliveries=100_000,
    latency_seconds=20.0,
    journal_events=100_000,
)
QUICK = Sizes(
    runs=3,
    slow_runs=1,
    flow_counts=(100, 1_000),
    large_flows=1_000,
    ingest_deliveries=4_000,
    burst_deliveries=10_000,
    latency_seconds=12.0,
    journal_events=10_000,
)


@dataclass
class Context:
    """Lazily built inputs, kept for the whole run so benchmarks can share them."""

    sizes: Sizes
    workdir: Path
    started: float = field(default_factory=time.perf_counter)
    _key: SigningKey | None = None
    _signed: int = 0
    # One notion of "now" for every delivery, however many times the file is extended.
    _now_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    _populations: dict[int, Population] = field(default_factory=dict)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def note(self, message: str) -> None:
        """Progress on stderr, so the table on stdout stays clean."""
        elapsed = time.perf_counter() - self.started
        print(f"[{elapsed:6.1f} s] {message}", file=sys.stderr, flush=True)

    def scratch(self, name: str) -> Path:
        """A new directory for one process's state and log."""
        path = self.workdir / f"{next(self._counter):03d}-{name}"
        path.mkdir(parents=True)
        return path

    @property
    def key(self) -> SigningKey:
        """The signing key, pinned in a directory every exporter is pointed at."""
        if self._key is None:
            self._key = SigningKey.create(self.workdir / "pinned")
        return self._key

    def request_file(self, count: int) -> Path:
        """The file of signed deliveries, extended to hold at least `count` distinct ones."""
        path = self.workdir / "requests.bin"
        if count > self._signed:
            started = time.perf_counter()
            write_request_file(self.key, path, self._signed, count, self._now_ms)
            self.note(
                f"signed deliveries {self._signed}..{count} in "
                f"{time.perf_counter() - started:.1f} s ({path.stat().st_size / 2**20:.0f} MiB)"
            )
            self._signed = count
        return path

    def population(self, flows: int) -> Population:
        """A state file holding `flows` flows, recorded once and copied by each service."""
        if flows not in self._populations:
            population = populate(self.workdir / f"population-{flows}.db", flows)
            self.note(
                f"recorded {flows} flows ({population.keys} de-duplication keys) "
                f"in {population.seconds:.1f} s"
            )
            self._populations[flows] = population
        return self._populations[flows]
