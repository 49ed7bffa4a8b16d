"""`python -m tests.benchmarks [NAME ...] [--quick]`: run benchmarks, print Markdown tables.

Progress goes to stderr, the tables to stdout. Every process is started here, on 127.0.0.1,
and stopped by its own PID; all files live in one temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.benchmarks import (
    bench_burst,
    bench_dedup,
    bench_hostile,
    bench_ingest,
    bench_journal,
    bench_latency,
    bench_memory,
    bench_postgres,
    bench_scrape,
    bench_stages,
    profiles,
)
from tests.benchmarks.context import FULL, QUICK, Context
from tests.benchmarks.report import Section, machine, revision

Benchmark = Callable[[Context], list[Section]]


# In the order of the default run: the ones sharing the request file, then the large store.
BENCHMARKS: dict[str, Benchmark] = {
    "stages": bench_stages.run,
    "ingest": bench_ingest.run,
    "scrape": bench_scrape.run,
    "latency": bench_latency.run,
    "memory": bench_memory.run,
    "burst": bench_burst.run,
    "journal": bench_journal.run,
    "hostile": bench_hostile.run,
    "dedup": bench_dedup.run,
    "ingest-postgres": bench_postgres.run,
}
# Not part of the default run: profiles are for reading, not for the README table.
EXTRA: dict[str, Benchmark] = {"profile": profiles.run}


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmarks (default: all of BENCHMARKS) and print their tables."""
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"any of {', '.join([*BENCHMARKS, *EXTRA])} (default: {', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer runs, smaller sizes (1 000 flows, 10 000 burst deliveries): about a minute",
    )
    args = parser.parse_args(argv)
    known = {**BENCHMARKS, **EXTRA}
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(known)}")
    names = args.names or list(BENCHMARKS)
    sizes = QUICK if args.quick else FULL

    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="aep-bench-") as workdir:
        ctx = Context(sizes, Path(workdir))
        ctx.note(f"running {', '.join(names)} ({'quick' if args.quick else 'full'}) in {workdir}")
        for name in names:
            started = time.perf_counter()
            sections.extend(known[name](ctx))
            ctx.note(f"{name} took {time.perf_counter() - started:.0f} s")
        total = time.perf_counter() - ctx.started

    command = " ".join(["python -m tests.benchmarks", *args.names] + ["--quick"] * args.quick)
    print(f"Machine: {machine()}  ")
    print(f"Run: `{command}` at {revision()}, {total / 60:.1f} min.\n")
    print("\n\n".join(section.markdown() for section in sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
