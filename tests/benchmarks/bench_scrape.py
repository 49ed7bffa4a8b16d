"""Scrape: /metrics time and bytes by flow count, beside generate_latest and the pushgateway."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.benchmarks import equivalent, harness
from tests.benchmarks.context import Context
from tests.benchmarks.population import Population
from tests.benchmarks.report import Section, Table, ms, number, size

KINDS = {"Prometheus": harness.PROMETHEUS_HEADERS, "plain": harness.PLAIN_HEADERS}
SLOW_FLOWS = 10_000


@dataclass
class Timing:
    """Seconds of each run of one kind of request, and the size of the last answer."""

    seconds: list[float] = field(default_factory=list)
    size: int = 0

    def add(self, seconds: float, body: bytes) -> None:
        """Record one run."""
        self.seconds.append(seconds)
        self.size = len(body)

    def cell(self) -> str:
        """`median ms · size`."""
        return f"{ms(harness.median(self.seconds))} ms · {size(self.size)}"


Timings = dict[str, Timing]  # by request kind


def scrape(port: int, kind: str, timings: Timings) -> bytes:
    """One scrape of this kind on a new connection, recorded in `timings`."""
    answer = harness.fetch(port, "/metrics", KINDS[kind])
    if answer.status != 200:
        raise RuntimeError(f"/metrics answered {answer.status}")
    timings.setdefault(kind, Timing()).add(answer.seconds, answer.body)
    return answer.body


def renders(render: dict[str, Callable[[], bytes]], runs: int) -> Timings:
    """`runs` in-process renderings of each kind, alternating."""
    timings: Timings = {}
    for _ in range(runs):
        for kind in KINDS:
            started = time.perf_counter()
            body = render[kind]()
            timings.setdefault(kind, Timing()).add(time.perf_counter() - started, body)
    return timings


def push(port: int, text: bytes) -> None:
    """Replace the pushgateway's group with this exposition text."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=harness.HTTP_TIMEOUT)
    try:
        conn.request(
            "PUT",
            "/metrics/job/aep-flow-exporter",
            body=text,
            headers={"Content-Type": "text/plain; version=0.0.4"},
        )
        answer = conn.getresponse()
        detail = answer.read()
    finally:
        conn.close()
    if answer.status != 200:
        raise RuntimeError(f"pushgateway refused the push: {answer.status} {detail[:200]!r}")


def exporter_scrapes(ctx: Context, population: Population) -> tuple[Timings, Timings, bytes]:
    """First scrapes and later scrapes of fresh services on copies of the store, and the text."""
    first: Timings = {}
    served: Timings = {}
    text = b""
    for _ in range(ctx.sizes.runs):
        with harness.exporter_process(
            ctx.scratch(f"exporter-{population.flows}"), ctx.key, state=population.path
        ) as exporter:
            # The first scrape after start renders every flow; later ones reuse the text of
            # flows that did not change.
            scrape(exporter.port, "Prometheus", first)
            for kind in KINDS:
                text = scrape(exporter.port, kind, served)
    return first, served, text


def ordinary_renders(population: Population, runs: int) -> Timings:
    """generate_latest over ordinary objects holding the same series."""
    flow_records, buckets = equivalent.load_flows(population.path)
    with equivalent.without_created():
        registry = equivalent.ordinary_registry(flow_records, buckets)
        return renders(
            {
                kind: equivalent.renderer(registry, prometheus=kind == "Prometheus")
                for kind in KINDS
            },
            runs,
        )


def pushgateway_scrapes(port: int, text: bytes, runs: int) -> Timings:
    """Push the exposition text, then scrape the pushgateway."""
    push(port, text)
    pushed: Timings = {}
    for _ in range(runs):
        for kind in KINDS:
            scrape(port, kind, pushed)
    return pushed


def run(ctx: Context) -> list[Section]:
    """For each flow count: the exporter, an equivalent ordinary registry, the pushgateway."""
    sizes = ctx.sizes
    table = Table(
        "Scrape: /metrics with the full metric set",
        [
            "flows",
            "series",
            "request",
            "aep-flow-exporter, first scrape",
            "aep-flow-exporter /metrics",
            "generate_latest, ordinary objects (in-process)",
            "pushgateway /metrics",
        ],
    )
    with harness.pushgateway_process(ctx.scratch("pushgateway")) as gateway:
        for flows in sizes.flow_counts:
            population = ctx.population(flows)
            first, served, text = exporter_scrapes(ctx, population)
            # Only the ordinary objects are slow enough to need fewer runs.
            rendered = ordinary_renders(
                population, sizes.slow_runs if flows >= SLOW_FLOWS else sizes.runs
            )
            pushed = pushgateway_scrapes(gateway.port, text, sizes.runs)
            series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
            for kind in KINDS:
                table.rows.append(
                    [
                        number(flows),
                        number(series),
                        kind,
                        first[kind].cell() if kind in first else "",
                        served[kind].cell(),
                        rendered[kind].cell(),
                        pushed[kind].cell(),
                    ]
                )
            ctx.note(
                f"scrape {flows} flows (Prometheus): exporter first {first['Prometheus'].cell()}, "
                f"then {served['Prometheus'].cell()}; generate_latest "
                f"{rendered['Prometheus'].cell()}; pushgateway {pushed['Prometheus'].cell()}"
            )
    slow = [f for f in sizes.flow_counts if f >= SLOW_FLOWS]
    table.notes += [
        f"Median of {sizes.runs} runs per cell"
        + (f" ({sizes.slow_runs} for generate_latest at {number(slow[0])} flows)" if slow else "")
        + ". Each exporter run starts a fresh service on a copy of the store: its first scrape "
        "(Prometheus headers) renders every flow, the next ones reuse the text of unchanged "
        "flows; each scrape on a new loopback connection, timed to the last body byte; bytes "
        "as sent (gzip where asked).",
        "Prometheus: `Accept: application/openmetrics-text;version=1.0.0,text/plain;"
        "version=0.0.4;q=0.5`, `Accept-Encoding: gzip` (the exporter answers OpenMetrics, gzip "
        "level 1; the pushgateway answers text 0.0.4 gzip). plain: no Accept headers (text "
        "0.0.4, uncompressed).",
        "Every flow has runs of both outcomes, 3 error codes, 2 activities, 2 histogram "
        "observations, an open run and both alert states; states were recorded through "
        "`Recorder.record` over `normalize_body` documents before the service started.",
        "generate_latest: the same series as ordinary Counter/Gauge/Histogram objects (built "
        "from the exporter's own collector output; no `_created` samples, histogram sums "
        "differ in value only), rendered in the benchmark process as /metrics would (OpenMetrics "
        "+ gzip level 1, or text 0.0.4); no HTTP.",
        "pushgateway: the exporter's plain text PUT to `/metrics/job/aep-flow-exporter` of "
        "Debian's prometheus-pushgateway (no persistence); its output adds `job`/`instance` "
        "labels and its own metrics.",
    ]
    return [table]
