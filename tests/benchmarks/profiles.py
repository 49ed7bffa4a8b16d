"""The stage table; cProfile of one large scrape (in-process) and of the serving process."""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import re
import shutil
import time
import zlib
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.config import Settings
from exporter.metrics.rendering import render_metrics
from exporter.service import build_exporter
from tests.benchmarks import bench_stages, harness
from tests.benchmarks.bench_ingest import send
from tests.benchmarks.context import Context
from tests.benchmarks.report import Section, Text, number, size

TOP = 15
REPOSITORY = Path(__file__).resolve().parents[2]


def _top(
    source: cProfile.Profile | Path,
    *,
    sort: pstats.SortKey = pstats.SortKey.CUMULATIVE,
    only: str = "",
) -> str:
    """The TOP functions (whose `path:line(name)` matches `only`), without pstats' header."""
    out = io.StringIO()
    stats = pstats.Stats(
        source if isinstance(source, cProfile.Profile) else str(source), stream=out
    )
    stats.sort_stats(sort).print_stats(*([only] if only else []), TOP)
    text = out.getvalue()
    totals = re.search(r"\d+ function calls.*", text)
    table = text[text.index("   ncalls") :]
    # Paths relative to the repository or to site-packages, to keep lines short.
    table = re.sub(r"\S*/(?:site-packages|lib/python3\.\d+)/", "", table)
    table = table.replace(f"{REPOSITORY}/", "")
    return (totals.group(0) + "\n\n" if totals else "") + table


def profile_scrape(ctx: Context) -> list[Text]:
    """The first and the second Prometheus scrape's rendering over the large store, in-process."""
    flows = ctx.sizes.large_flows
    state = ctx.scratch("profile-scrape") / "state.db"
    shutil.copyfile(ctx.population(flows).path, state)
    settings = Settings(state_path=state, pinned_keys_dir=ctx.key.pinned_dir)
    exporter = build_exporter(settings, CollectorRegistry())
    asyncio.run(exporter.recorder.open())
    encoder, content_type = choose_encoder(harness.PROMETHEUS_ACCEPT)
    records, catalogue = dict(exporter.recorder.flows), exporter.catalogue

    def render() -> bytes:
        # What metrics_endpoint sends for Prometheus's Accept and Accept-Encoding.
        async def chunks() -> list[bytes]:
            rendered = render_metrics(
                exporter.metrics,
                exporter.exposition,
                records,
                catalogue,
                encoder,
                openmetrics=content_type.startswith("application/openmetrics-text"),
            )
            return [chunk async for chunk in rendered]

        gzipper = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        parts = [gzipper.compress(chunk) for chunk in asyncio.run(chunks())]
        return b"".join([*parts, gzipper.flush()])

    texts = []
    try:
        for which in ("first", "second"):
            profiler = cProfile.Profile()
            started = time.perf_counter()
            profiler.enable()
            body = render()
            profiler.disable()
            seconds = time.perf_counter() - started
            texts.append(
                Text(
                    f"Profile: the {which} Prometheus scrape at {number(flows)} flows "
                    f"(cProfile, top {TOP} by cumulative time)",
                    _top(profiler),
                    [
                        f"In-process: `build_exporter` + `Recorder.open` on a copy of the store, "
                        f"then what `metrics_endpoint` renders (OpenMetrics, gzip level 1, "
                        f"{size(len(body))}) in {seconds:.2f} s under the profiler."
                    ],
                )
            )
    finally:
        asyncio.run(exporter.recorder.close())
    return texts


def profile_ingest(ctx: Context) -> list[Text]:
    """The serving process under cProfile while it takes the ingest benchmark's deliveries."""
    sizes = ctx.sizes
    workdir = ctx.scratch("profile-ingest")
    output = workdir / "serve.prof"
    with harness.exporter_process(workdir, ctx.key, profile=output) as exporter:
        run = send(ctx, exporter, sizes.ingest_deliveries, sizes.connections)
    if not output.exists():
        raise RuntimeError(f"cProfile wrote no output:\n{exporter.log_tail()}")
    title = (
        f"serving {number(sizes.ingest_deliveries)} deliveries over {sizes.connections} "
        f"connections (cProfile, top {TOP}"
    )
    note = (
        "`python -m cProfile -m exporter serve`, main thread only: the SQLite writer thread "
        f"(group commits) is not in it, and each resumption of a coroutine counts as a call. "
        f"{run.result.rate:.0f} deliveries/s under the profiler."
    )
    return [
        Text(
            f"Profile: {title} of the exporter's functions by cumulative time)",
            _top(output, only=r"exporter/(?!__main__\.py|cli\.py)"),
            [note],
        ),
        Text(
            f"Profile: {title} by own time)",
            _top(output, sort=pstats.SortKey.TIME),
            [note],
        ),
    ]


def run(ctx: Context) -> list[Section]:
    """The per-stage CPU table, then both profiles."""
    return [*bench_stages.run(ctx), *profile_scrape(ctx), *profile_ingest(ctx)]
