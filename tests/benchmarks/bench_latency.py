"""Latency under scrape: webhook latency at a steady load while /metrics is scraped every 5 s."""

from __future__ import annotations

import threading
import time

from tests.benchmarks import harness, wrk
from tests.benchmarks.context import Context
from tests.benchmarks.report import Section, Table, ms, number

# Each connection waits this long before its next delivery: a steady load well below capacity,
# so latency shows the scrapes' effect rather than queueing at saturation.
PACE_MS = 100


class Scraper:
    """Scrape /metrics as Prometheus does, one scrape starting every `interval` seconds."""

    def __init__(self, port: int, interval: float) -> None:
        self._port = port
        self._interval = interval
        self._stop = threading.Event()
        self.seconds: list[float] = []
        self._thread = threading.Thread(target=self._loop, name="scraper", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            answer = harness.fetch(self._port, "/metrics", harness.PROMETHEUS_HEADERS)
            if answer.status == 200:
                self.seconds.append(answer.seconds)
            # Like Prometheus: never two scrapes of one target at once.
            self._stop.wait(max(0.0, started + self._interval - time.perf_counter()))

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=harness.HTTP_TIMEOUT)


def paced(
    ctx: Context, port: int, seconds: float, *, until: threading.Event | None = None
) -> wrk.WrkResult:
    """The steady webhook load for `seconds` (or until `until` is set): each connection pauses
    PACE_MS before its next signed delivery; raises unless every delivery was answered 200."""
    sizes = ctx.sizes
    # At most connections * 1000 / PACE_MS deliveries per second can be sent.
    limit = int(seconds * sizes.connections * 1000 / PACE_MS) + sizes.connections
    result = wrk.run(
        port,
        ctx.request_file(limit),
        limit=limit,
        connections=sizes.connections,
        seconds=seconds,
        pace_ms=PACE_MS,
        until=until,
    )
    if result.exhausted or result.failed or result.socket_errors:
        raise RuntimeError(f"latency run not clean: {result}")
    return result


def run(ctx: Context) -> list[Section]:
    """Alternating runs on fresh copies of the large store: without scrapes, then with them."""
    sizes = ctx.sizes
    flows = sizes.large_flows
    population = ctx.population(flows)
    seconds = sizes.latency_seconds
    labels = ("no scrapes", f"scraped every {sizes.scrape_interval:g} s")
    results: dict[str, list[wrk.WrkResult]] = {label: [] for label in labels}
    scrape_seconds: list[float] = []
    for index in range(sizes.slow_runs):
        for label in labels:
            with harness.exporter_process(
                ctx.scratch("exporter-latency"), ctx.key, state=population.path
            ) as exporter:
                # Steady state: the one scrape that renders every flow happens before the run.
                harness.fetch(exporter.port, "/metrics", harness.PROMETHEUS_HEADERS)
                if label == labels[0]:
                    results[label].append(paced(ctx, exporter.port, seconds))
                else:
                    with Scraper(exporter.port, sizes.scrape_interval) as scraper:
                        results[label].append(paced(ctx, exporter.port, seconds))
                    scrape_seconds += scraper.seconds
            ctx.note(
                f"latency run {index + 1}/{sizes.slow_runs}, {label}: "
                f"p99 {ms(results[label][-1].p99)} ms"
            )
    table = Table(
        f"Webhook latency under scrape: {number(flows)} flows",
        ["/metrics", "deliveries/s", "p50 ms", "p99 ms", "max ms", "scrapes (median time)"],
    )
    median = harness.median
    for label, runs in results.items():
        scrapes = "0"
        if label != labels[0] and scrape_seconds:
            scrapes = f"{len(scrape_seconds)} ({ms(median(scrape_seconds))} ms)"
        table.rows.append(
            [
                label,
                number(median([r.rate for r in runs])),
                ms(median([r.p50 for r in runs])),
                ms(median([r.p99 for r in runs])),
                ms(median([r.max for r in runs])),
                scrapes,
            ]
        )
    table.notes += [
        f"Median of {sizes.slow_runs} alternating runs of {seconds:g} s (slow), each on a fresh "
        f"copy of a {number(flows)}-flow store scraped once before the run (so the first, "
        f"full rendering is not in it): {sizes.connections} connections, each pausing "
        f"{PACE_MS} ms before its next signed delivery (a steady load below capacity, to 1 000 "
        "of the flows); scrapes with Prometheus's headers, the next starting "
        f"{sizes.scrape_interval:g} s after the previous one started, or right after it ends "
        "if it took longer; scrapes counted over all runs.",
        "Latencies are wrk's, including its coordinated-omission correction.",
    ]
    return [table]
