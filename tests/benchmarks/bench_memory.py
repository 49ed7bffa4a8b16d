"""Memory per tracked flow and start-up time, with an empty store and with the large one."""

from __future__ import annotations

from tests.benchmarks import harness
from tests.benchmarks.context import Context
from tests.benchmarks.report import Section, Table, ms, number, size


def run(ctx: Context) -> list[Section]:
    """Alternate starts of an empty and a large store; RSS at ready, and after one scrape."""
    sizes = ctx.sizes
    flows = sizes.large_flows
    population = ctx.population(flows)
    startup: dict[int, list[float]] = {0: [], flows: []}
    rss: dict[int, list[int]] = {0: [], flows: []}
    rss_scraped: dict[int, int] = {}
    for index in range(sizes.runs):
        last = index == sizes.runs - 1
        for count in (0, flows):
            state = population.path if count else None
            with harness.exporter_process(
                ctx.scratch(f"exporter-{count}"), ctx.key, state=state
            ) as exporter:
                startup[count].append(exporter.startup_seconds)
                rss[count].append(harness.rss_bytes(exporter.pid))
                if last:
                    harness.fetch(exporter.port, "/metrics", harness.PROMETHEUS_HEADERS)
                    rss_scraped[count] = harness.rss_bytes(exporter.pid)
        ctx.note(
            f"memory run {index + 1}/{sizes.runs}: start-up {startup[flows][-1]:.2f} s, "
            f"RSS {rss[flows][-1] / 2**20:.0f} MiB at {flows} flows"
        )
    per_flow = (harness.median(rss[flows]) - harness.median(rss[0])) / flows
    per_flow_scraped = (rss_scraped[flows] - rss_scraped[0]) / flows
    table = Table(
        "Memory and start-up",
        ["store", "start-up to /readyz 200", "RSS at ready", "RSS after one scrape"],
    )
    table.rows.append(
        [
            "empty",
            f"{ms(harness.median(startup[0]))} ms",
            size(harness.median(rss[0])),
            size(rss_scraped[0]),
        ]
    )
    table.rows.append(
        [
            f"{number(flows)} flows, {number(population.keys)} de-duplication keys",
            f"{ms(harness.median(startup[flows]))} ms",
            size(harness.median(rss[flows])),
            size(rss_scraped[flows]),
        ]
    )
    table.rows.append(
        [
            "per tracked flow",
            "",
            f"{per_flow / 1024:.1f} KiB",
            f"{per_flow_scraped / 1024:.1f} KiB",
        ]
    )
    table.notes += [
        f"Start-up: from spawning `aep-flow-exporter serve` to the first 200 from /readyz "
        f"(polled every 5 ms), median of {sizes.runs} alternating starts; RSS from "
        f"/proc/PID/statm at that moment (median), and once more after one Prometheus scrape "
        "in the last run.",
        f"Per flow: (RSS with {number(flows)} flows - RSS empty) / {number(flows)}. The "
        f"de-duplication keys stay in SQLite ({size(population.path.stat().st_size)} state "
        "file); they cost start-up time only through opening the file.",
    ]
    return [table]
