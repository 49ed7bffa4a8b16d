"""What the 8-day de-duplication window of a pull source costs: store size and start-up time."""

from __future__ import annotations

from tests.benchmarks import harness
from tests.benchmarks.context import Context
from tests.benchmarks.population import add_hourly_run_keys
from tests.benchmarks.report import Section, Table, ms, number, size

# Hours of keys each window keeps: 72h (webhook only) and 8d (a pull source on).
WINDOWS = {"72h (webhook only)": 72, "8d (journal or reconciliation on)": 192}


def run(ctx: Context) -> list[Section]:
    """Stores of `large_flows` hourly flows with each window's keys; size and start-up."""
    flows = ctx.sizes.large_flows
    base = ctx.population(flows)
    table = Table(
        "De-duplication window: store size and start-up",
        ["keys kept", "de-duplication keys", "state file", "start-up to /readyz 200"],
    )
    for label, hours in WINDOWS.items():
        store = add_hourly_run_keys(base, ctx.workdir / f"dedup-{hours}h.db", hours)
        ctx.note(f"{label}: {store.keys} keys in {store.seconds:.1f} s")
        startups = []
        for _ in range(ctx.sizes.runs):
            with harness.exporter_process(
                ctx.scratch(f"dedup-{hours}h"), ctx.key, state=store.path
            ) as exporter:
                startups.append(exporter.startup_seconds)
        table.rows.append(
            [
                label,
                number(store.keys),
                size(store.path.stat().st_size),
                f"{ms(harness.median(startups))} ms",
            ]
        )
    table.notes += [
        f"{number(flows)} flows each running hourly: one run per flow per hour leaves two keys "
        "(its event id and its run id + outcome), claimed through the store's own claim_keys "
        "at their hour; the same flow records as the memory benchmark.",
        f"Start-up: spawn to the first 200 from /readyz, median of {ctx.sizes.runs} starts on "
        "a copy of the file (open, integrity check, flow records loaded; keys stay on disk).",
    ]
    return [table]
