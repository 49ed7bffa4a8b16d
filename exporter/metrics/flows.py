"""Metrics: the per-flow view over the state records, in the declared families' order."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.catalogue import Catalogue, CatalogueEntry
from exporter.domain import ActivityStatus, AlertKind, FlowKey, Outcome
from exporter.metrics import families as fam
from exporter.metrics.families import FLOW_FAMILIES, Family
from exporter.records import COUNT_FIELDS, FlowState

# The families of FlowState.totals, by COUNT_FIELDS entry.
_TOTALS = tuple(
    zip(
        COUNT_FIELDS,
        (
            fam.INPUT_RECORDS,
            fam.OUTPUT_RECORDS,
            fam.FAILED_RECORDS,
            fam.INPUT_BYTES,
            fam.OUTPUT_BYTES,
            fam.INPUT_FILES,
            fam.OUTPUT_FILES,
        ),
        strict=True,
    )
)


def _flow_name(state: FlowState | None, catalogue_name: str, flow_id: str) -> str:
    # Catalogue, then Flow Service, then the newest payload, then the id (protocol notes §18.18).
    if catalogue_name:
        return catalogue_name
    if state is not None and state.enrichment is not None and state.enrichment.name:
        return state.enrichment.name
    if state is not None and state.flow_name:
        return state.flow_name
    return flow_id


def _source(state: FlowState | None, entry: CatalogueEntry | None) -> str:
    if entry is not None and entry.source:
        return entry.source
    if state is not None and state.enrichment is not None:
        return state.enrichment.source or ""
    return ""


def _expected_interval(state: FlowState | None, entry: CatalogueEntry | None) -> float | None:
    if entry is not None and entry.expected_interval is not None:
        return entry.expected_interval
    if state is not None and state.enrichment is not None:
        return state.enrichment.expected_interval
    return None


# (sample name, labels sorted by name, value): the exposition formats sort labels by name too.
FlowSample = tuple[str, tuple[tuple[str, str], ...], float]
# Receives each sample of a flow: (family index, sample name, value, extra labels beyond
# sandbox and flow_id). The collector and the fast exposition each bring their own.
SampleSink = Callable[[int, str, float, tuple[tuple[str, str], ...]], None]
_INDEX = {family.name: index for index, family in enumerate(FLOW_FAMILIES)}


def bucket_labels(buckets: tuple[float, ...]) -> list[str]:
    """The `le` label values of the duration histogram, +Inf last."""
    return [str(floatToGoString(b)) for b in buckets] + ["+Inf"]  # type: ignore[no-untyped-call]


def emit_flow(
    state: FlowState | None,
    entry: CatalogueEntry | None,
    flow_id: str,
    les: list[str],
    add: SampleSink,
) -> None:
    """Every sample of one flow, in exposition order within each family, handed to `add`."""

    def sample(family: Family, suffix: str, value: float, *extra: tuple[str, str]) -> None:
        add(_INDEX[family.name], family.name + suffix, float(value), extra)

    for outcome in Outcome:
        value = state.runs[outcome.value] if state else 0
        sample(fam.RUNS, "_total", value, ("status", outcome.value))
    sample(fam.RUNS_WITH_ERRORS, "_total", state.runs_with_errors if state else 0)
    sample(fam.RUNS_STARTED, "_total", state.runs_started if state else 0)
    for name, family in _TOTALS:
        sample(family, "_total", state.totals[name] if state else 0)
    if state is not None:
        for code, value in state.error_codes.items():
            sample(fam.RUN_ERRORS, "_total", value, ("error_code", code))
        for activity, counts in state.activities.items():
            for status in ActivityStatus:
                sample(
                    fam.ACTIVITY_RUNS,
                    "_total",
                    counts[status.value],
                    ("activity", activity),
                    ("status", status.value),
                )

    if len(les) > 1:
        histogram = fam.RUN_DURATION
        observed = state.duration_buckets if state is not None else [0] * len(les)
        running = 0
        for le, bucket in zip(les, observed, strict=True):
            running += bucket
            sample(histogram, "_bucket", running, ("le", le))
        sample(histogram, "_count", running)
        sample(histogram, "_sum", state.duration_sum if state is not None else 0.0)

    if state is not None:
        _gauges(sample, state)
    sample(
        fam.FLOW_INFO,
        "",
        1,
        ("flow_name", _flow_name(state, entry.name if entry else "", flow_id)),
        ("owner", entry.owner if entry else ""),
        ("source", _source(state, entry)),
        ("flow_severity", entry.severity if entry else ""),
        ("ims_org", (state.ims_org or "") if state is not None else ""),
    )
    interval = _expected_interval(state, entry)
    if interval is not None:
        sample(fam.EXPECTED_INTERVAL, "", interval)
    enabled = state.enrichment.enabled if state is not None and state.enrichment else None
    if enabled is not None:
        sample(fam.FLOW_ENABLED, "", 1 if enabled else 0)


def flow_samples(
    key: FlowKey,
    state: FlowState | None,
    entry: CatalogueEntry | None,
    les: list[str],
) -> list[list[FlowSample]]:
    """Every sample of one flow, one list per entry of FLOW_FAMILIES (empty when absent)."""
    out: list[list[FlowSample]] = [[] for _ in FLOW_FAMILIES]
    base = (("sandbox", key.sandbox), ("flow_id", key.flow_id))

    def add(index: int, name: str, value: float, extra: tuple[tuple[str, str], ...]) -> None:
        out[index].append((name, tuple(sorted(base + extra)), value))

    emit_flow(state, entry, key.flow_id, les, add)
    return out


def _gauges(sample: Callable[..., None], state: FlowState) -> None:
    for outcome in Outcome:
        completed = state.last_completed.get(outcome.value)
        if completed is not None:
            sample(fam.LAST_RUN_TIMESTAMP, "", completed, ("status", outcome.value))
    newest = state.newest
    if newest is not None:
        sample(fam.LAST_RUN_SUCCESS, "", 1 if newest.success else 0)
        if newest.duration is not None:
            sample(fam.LAST_RUN_DURATION, "", newest.duration)
        if newest.input_records is not None:
            sample(fam.LAST_RUN_INPUT_RECORDS, "", newest.input_records)
        if newest.output_records is not None:
            sample(fam.LAST_RUN_OUTPUT_RECORDS, "", newest.output_records)
    sample(fam.RUNS_IN_PROGRESS, "", len(state.open_runs))
    for kind in AlertKind:
        alert = state.alerts.get(kind.value)
        if alert is not None:
            sample(fam.ALERT_ACTIVE, "", alert[0], ("alert", kind.value))


def flow_keys(flows: Mapping[FlowKey, FlowState], catalogue: Catalogue) -> list[FlowKey]:
    """Every flow to expose: tracked ones and catalogued ones, in a stable order."""
    return sorted(set(flows) | set(catalogue.entries))


def omitted_families(duration_buckets: tuple[float, ...], *, enrichment: bool) -> frozenset[Family]:
    """The flow families a configuration turns off: the histogram without buckets, and
    aep_flow_enabled without Flow Service enrichment (so without it nothing changes)."""
    omitted: set[Family] = set()
    if not duration_buckets:
        omitted.update(f for f in FLOW_FAMILIES if f.type == "histogram")
    if not enrichment:
        omitted.add(fam.FLOW_ENABLED)
    return frozenset(omitted)


class FlowCollector(Collector):
    """The per-flow families as prometheus_client metrics, built from the state records.

    /metrics renders the same samples faster (exporter.metrics.rendering); this collector is the
    straightforward rendering it is tested against, and what registry look-ups see.
    """

    def __init__(
        self,
        flows: Callable[[], Mapping[FlowKey, FlowState]],
        catalogue: Callable[[], Catalogue],
        duration_buckets: tuple[float, ...],
        *,
        enrichment: bool = False,
    ) -> None:
        self._flows = flows
        self._catalogue = catalogue
        self._les = bucket_labels(duration_buckets)
        self._omitted = omitted_families(duration_buckets, enrichment=enrichment)

    def describe(self) -> Iterator[Metric]:
        """Nothing: the collector is unchecked (its series change with the records)."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """Yield every flow family, in the contract's order."""
        states = dict(self._flows())
        catalogue = self._catalogue()
        metrics = [Metric(f.name, f.help, f.type) for f in FLOW_FAMILIES]
        for key in flow_keys(states, catalogue):
            per_family = flow_samples(key, states.get(key), catalogue.get(key), self._les)
            for metric, samples in zip(metrics, per_family, strict=True):
                for name, labels, value in samples:
                    metric.add_sample(name, dict(labels), value)
        for family, metric in zip(FLOW_FAMILIES, metrics, strict=True):
            if family not in self._omitted:
                yield metric
