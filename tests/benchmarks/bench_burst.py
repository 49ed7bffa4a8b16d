"""Burst: absorb a backlog of queued retries, all distinct, as fast as the service takes them."""

from __future__ import annotations

from tests.benchmarks import harness
from tests.benchmarks.bench_ingest import recorded, send
from tests.benchmarks.context import Context
from tests.benchmarks.report import Section, Table, ms, number


def run(ctx: Context) -> list[Section]:
    """One run (it is the slowest figure): the whole backlog over many connections."""
    sizes = ctx.sizes
    count, connections = sizes.burst_deliveries, sizes.burst_connections
    ctx.request_file(count)
    with harness.exporter_process(ctx.scratch("exporter-burst"), ctx.key) as exporter:
        burst = send(ctx, exporter, count, connections)
        stored, duplicates = recorded(exporter)
    if stored != count or duplicates:
        raise RuntimeError(f"exporter recorded {stored} of {count}, {duplicates} duplicates")
    result = burst.result
    ctx.note(f"burst: {count} in {result.seconds:.1f} s")
    table = Table(
        f"Burst: {number(count)} queued deliveries, {connections} connections",
        ["total time", "deliveries/s", "p50 ms", "p99 ms", "server CPU", "wrk CPU"],
    )
    table.rows.append(
        [
            f"{result.seconds:.1f} s",
            number(result.rate),
            ms(result.p50),
            ms(result.p99),
            f"{burst.server_cpu:.1f} s",
            f"{result.cpu_seconds:.1f} s",
        ]
    )
    table.notes += [
        f"One run (slow): {number(count)} distinct signed notifications sent as fast as a fresh "
        f"exporter answers them over {connections} keep-alive connections, timed from the "
        "first request to the last answer; every one was answered 200 and recorded, 0 "
        "duplicates.",
    ]
    return [table]
