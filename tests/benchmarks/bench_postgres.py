"""ingest-postgres: ingest on PostgreSQL (one and two replicas) against SQLite, convergence lag,
and the driver's round trips (psycopg's C implementation against its pure-Python one)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.benchmarks import harness, wrk
from tests.benchmarks.bench_ingest import Run, send
from tests.benchmarks.context import Context
from tests.benchmarks.report import Section, Table, ms, number
from tests.postgres import PostgresCluster
from tests.support import Child

LAG_SAMPLES = 40
ROUND_TRIP_SECONDS = 3.0


def records(path: Path, start: int, stop: int) -> list[bytes]:
    """Raw records `start`..`stop` of a request file ("<length>\\n<raw HTTP request>")."""
    found: list[bytes] = []
    with path.open("rb") as file:
        for index in range(stop):
            header = file.readline()
            if not header:
                break
            raw = file.read(int(header))
            if index >= start:
                found.append(raw)
    return found


def write_records(path: Path, raws: list[bytes]) -> Path:
    """A request file of these records."""
    with path.open("wb") as file:
        for raw in raws:
            file.write(b"%d\n" % len(raw) + raw)
    return path


def send_raw(port: int, raw: bytes) -> int:
    """Send one raw HTTP request and return its status (the connection then closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw.replace(b"keep-alive", b"close"))
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def flow_digest(process: Child) -> str:
    """A digest of the flow section of /metrics."""
    text = harness.fetch(process.port, "/metrics").body
    flows = b"".join(line for line in text.splitlines() if line.startswith(b"aep_flow_"))
    return hashlib.sha256(flows).hexdigest()


def send_split(ctx: Context, processes: list[Child], count: int, connections: int) -> Run:
    """Half the deliveries to each replica at once; one Run over both (the slower one's time)."""
    raws = records(ctx.request_file(count), 0, count)
    files = [
        write_records(ctx.scratch("split") / "requests.bin", raws[index :: len(processes)])
        for index in range(len(processes))
    ]
    results: list[wrk.WrkResult] = []

    def one(process: Child, path: Path) -> None:
        results.append(
            wrk.run(
                process.port,
                path,
                limit=count,
                connections=connections // len(processes),
                seconds=max(60.0, count / 200),
                send_all=True,
            )
        )

    threads = [
        threading.Thread(target=one, args=pair) for pair in zip(processes, files, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ok = sum(r.ok for r in results)
    if ok != count:
        raise RuntimeError(f"two replicas answered 200 to {ok} of {count}")
    slowest = max(results, key=lambda r: r.seconds)
    merged = wrk.WrkResult(
        loaded=count, sent=count, answered=ok, ok=ok, failed=0, socket_errors=0,
        seconds=slowest.seconds, p50=max(r.p50 for r in results),
        p99=max(r.p99 for r in results), max=max(r.max for r in results),
        cpu_seconds=sum(r.cpu_seconds for r in results),
    )  # fmt: skip
    return Run(merged, 0.0, 0.0)


def convergence(ctx: Context, a: Child, b: Child, raws: list[bytes]) -> list[float]:
    """Seconds from A's 200 to the change on B's /metrics, one delivery at a time."""
    lags = []
    for raw in raws:
        before = flow_digest(b)
        if send_raw(a.port, raw) != 200:
            raise RuntimeError("a convergence probe was not answered 200")
        acknowledged = time.perf_counter()
        while flow_digest(b) == before:
            if time.perf_counter() - acknowledged > 10:
                raise RuntimeError("replica B did not converge within 10 s")
            time.sleep(0.01)
        lags.append(time.perf_counter() - acknowledged)
    ctx.note(f"convergence: {len(lags)} probes")
    return lags


def round_trips(url: str, implementation: str) -> float:
    """claim + lock + update transactions per second, in a child with PSYCOPG_IMPL set."""
    code = (
        "import sys, time\n"
        "from exporter.stores.postgres import PostgresStore\n"
        "from exporter.records import FlowState\n"
        "from exporter.domain import FlowKey\n"
        "store = PostgresStore(sys.argv[1], bucket_count=14); store.open()\n"
        "key, n, end = FlowKey('bench', 'f'), 0, time.perf_counter() + float(sys.argv[2])\n"
        "while time.perf_counter() < end:\n"
        "    with store.transaction():\n"
        "        store.claim_keys([f'k{n}'], 1.0)\n"
        "        state = store.lock_flows([key]).get(key) or FlowState.new(key, 1.0, 14)\n"
        "        store.put_flows([state])\n"
        "    n += 1\n"
        "print(n / float(sys.argv[2]))\n"
    )
    env = dict(os.environ, PSYCOPG_IMPL=implementation)
    result = subprocess.run(
        [sys.executable, "-c", code, url, str(ROUND_TRIP_SECONDS)],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return float(result.stdout)


def run(ctx: Context) -> list[Section]:
    """SQLite, PostgreSQL with one and two replicas; then lag and driver figures."""
    sizes = ctx.sizes
    count, connections = sizes.ingest_deliveries, sizes.connections
    requests = ctx.request_file(count + LAG_SAMPLES)
    cluster = PostgresCluster(fsync=True)  # durable like the SQLite file (synchronous=FULL)
    cluster.start()
    try:
        runs: dict[str, list[Run]] = {"sqlite": [], "pg1": [], "pg2": []}
        for index in range(sizes.slow_runs):
            with harness.exporter_process(ctx.scratch("sqlite"), ctx.key) as exporter:
                runs["sqlite"].append(send(ctx, exporter, count, connections))
            state = {"AEP_EXPORTER_STATE_URL": cluster.create_database()}
            with harness.exporter_process(ctx.scratch("pg1"), ctx.key, settings=state) as one:
                runs["pg1"].append(send(ctx, one, count, connections))
            state = {"AEP_EXPORTER_STATE_URL": cluster.create_database()}
            with (
                harness.exporter_process(ctx.scratch("pg2a"), ctx.key, settings=state) as a,
                harness.exporter_process(ctx.scratch("pg2b"), ctx.key, settings=state) as b,
            ):
                runs["pg2"].append(send_split(ctx, [a, b], count, connections))
                if index == 0:
                    lags = convergence(ctx, a, b, records(requests, count, count + LAG_SAMPLES))
            ctx.note(
                f"ingest-postgres run {index + 1}: "
                + ", ".join(f"{k} {v[-1].result.rate:.0f}/s" for k, v in runs.items())
            )
        # Without waiting for the disk: the driver's own cost per round trip, not fsync's.
        url = cluster.create_database() + "?options=-csynchronous_commit%3Doff"
        drivers = {impl: round_trips(url, impl) for impl in ("binary", "python")}
    finally:
        cluster.remove()
    median = harness.median
    rate = {name: median([r.result.rate for r in found]) for name, found in runs.items()}
    ingest = Table(
        f"Ingest on PostgreSQL: {number(count)} signed deliveries, {connections} connections",
        ["state store", "deliveries/s", "p50 ms", "p99 ms", "against SQLite"],
    )
    labels = {
        "sqlite": "SQLite file (one process)",
        "pg1": "PostgreSQL, one replica",
        "pg2": "PostgreSQL, two replicas (half the deliveries each)",
    }
    for name, found in runs.items():
        ingest.rows.append(
            [
                labels[name],
                number(rate[name]),
                ms(median([r.result.p50 for r in found])),
                ms(median([r.result.p99 for r in found])),
                f"{rate[name] / rate['sqlite']:.0%}",
            ]
        )
    lags.sort()
    p50, p99 = lags[len(lags) // 2], lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    ingest.notes += [
        f"Median of {sizes.slow_runs} runs, each on fresh processes and a fresh database of a "
        "throwaway PostgreSQL 15 cluster on loopback on the same disk (fsync on, default "
        "synchronous_commit; the SQLite file has synchronous=FULL). Two replicas: two wrk "
        "processes at once, half the connections each; their p99 is the larger of the two.",
        f"Targets: one replica >= 50 % of SQLite ({rate['pg1'] / rate['sqlite']:.0%}); two "
        f"replicas >= 1.5 x one ({rate['pg2'] / rate['pg1']:.2f} x).",
        f"Convergence (a delivery answered 200 by replica A until replica B's flow section "
        f"changes; AEP_EXPORTER_REPLICA_SYNC_INTERVAL=1s): p50 {ms(p50)} ms, p99 {ms(p99)} ms "
        f"over {len(lags)} probes (target p99 <= 2 s).",
        "Driver: psycopg 3 claim+lock+update transactions on one connection, "
        "synchronous_commit off: "
        f"{number(drivers['binary'])}/s with its C implementation (psycopg[binary]), "
        f"{number(drivers['python'])}/s pure Python over Debian's libpq.",
    ]
    return [ingest]
