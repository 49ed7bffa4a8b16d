"""`backfill --since DURATION`: reconciliation over a longer window, once, with progress."""

from __future__ import annotations

import argparse
import asyncio
import time

from prometheus_client import CollectorRegistry

from exporter.adobe.client import AdobeClient, AdobeError
from exporter.adobe.enrichment import known_sandboxes
from exporter.adobe.flow_service import FlowService
from exporter.adobe.ims import TokenProvider
from exporter.catalogue import load_catalogue
from exporter.cli.options import UsageError, settings_from_args
from exporter.cli.state import state_lock
from exporter.config import Settings
from exporter.durations import format_duration, parse_duration
from exporter.metrics.self_metrics import SelfMetrics
from exporter.service import build_pipeline, build_recorder
from exporter.sources.reconcile import Reconciler, Tally


def cmd_backfill(args: argparse.Namespace) -> int:
    """Record every finished run Flow Service knows since DURATION ago and no source brought."""
    settings = settings_from_args(args)
    if not settings.enabled:
        raise UsageError(
            "backfill reads Flow Service: set the IMS credentials (AEP_EXPORTER_IMS_*)"
        )
    since = parse_duration(args.since)
    if since > settings.dedup_window:
        # Runs older than the keys kept would count again once their keys are pruned.
        raise UsageError(
            f"--since {args.since} reaches beyond AEP_EXPORTER_DEDUP_WINDOW "
            f"({format_duration(settings.dedup_window)}): a later backfill would count those "
            "runs twice"
        )
    # Like `dead-letters replay`: never beside a running service on the same SQLite file.
    with state_lock(settings, wait=False):
        return asyncio.run(backfill(settings, since))


def _progress(sandbox: str, tally: Tally) -> None:
    print(
        f"{sandbox}: flows {tally.flows_done}/{tally.flows_total}, runs recorded "
        f"{tally.recorded}, duplicates {tally.duplicates}, in progress {tally.waiting}",
        flush=True,
    )


async def backfill(settings: Settings, since_seconds: float) -> int:
    """Reconcile every listed flow's runs of the window; 1 if a sandbox failed."""
    catalogue = load_catalogue(settings.catalogue_path)
    recorder = build_recorder(settings)
    # Backfill's own counts are not the service's: they go to a registry nobody scrapes.
    metrics = SelfMetrics(CollectorRegistry(), verification_on=settings.verification_on)
    pipeline = build_pipeline(settings, recorder, metrics)
    await recorder.open()
    tally, failed = Tally(), ""
    try:
        async with AdobeClient() as client:
            tokens = TokenProvider.from_settings(client, settings)
            reconciler = Reconciler(
                FlowService(tokens, settings.platform_url),
                pipeline,
                recorder,
                sandboxes=lambda: known_sandboxes(
                    settings.sandboxes, [*recorder.flows, *catalogue.entries]
                ),
            )
            try:
                await reconciler.reconcile(
                    time.time() - since_seconds,
                    every_flow=True,
                    settle=0.0,
                    progress=_progress,
                    tally=tally,
                )
            except AdobeError as exc:
                failed = str(exc)
            finally:
                await tokens.close()
    finally:
        await recorder.close()
    print(
        f"backfill {'incomplete' if failed else 'done'}: since {format_duration(since_seconds)},"
        f" flows {tally.flows_done}/{tally.flows_total}, runs recorded {tally.recorded},"
        f" duplicates {tally.duplicates}, in progress {tally.waiting}, not runs {tally.refused}"
    )
    if failed:
        print(f"failed: {failed} (run it again: nothing is counted twice)")
    return 1 if failed else 0
