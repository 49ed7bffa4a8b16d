"""Pull sources in the settings and the service: de-duplication window, pull-only mode, series."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from exporter.adobe.fake import FakeAdobe
from exporter.config import ConfigError, Settings, load_settings
from tests.adobe.conftest import adobe_settings
from tests.conftest import MakeClient

NOTIFICATIONS = "aep_exporter_notifications_total"


def test_the_dedup_window_is_8d_with_a_pull_source_and_72h_without(
    make_settings: Callable[..., Settings], fake: FakeAdobe
) -> None:
    """Keys outlive the journal's 7 days when a pull source is on; a set value always wins."""
    assert make_settings().dedup_window == 72 * 3600
    journal = adobe_settings(fake, journal_url=fake.journal_url)
    assert make_settings(**journal).dedup_window == 8 * 86400
    assert make_settings(**adobe_settings(fake, reconcile_interval=60)).dedup_window == 8 * 86400
    assert make_settings(**journal, dedup_window="9d").dedup_window == 9 * 86400
    assert make_settings(**adobe_settings(fake)).dedup_window == 72 * 3600  # enrichment only


def test_an_empty_webhook_path_needs_a_pull_source() -> None:
    """Pull only without a pull source would receive nothing: refused, naming the setting."""
    with pytest.raises(ConfigError, match="AEP_EXPORTER_WEBHOOK_PATH is empty"):
        load_settings({"AEP_EXPORTER_WEBHOOK_PATH": ""})


async def test_pull_only_serves_metrics_and_probes_and_404_on_the_old_webhook_path(
    make_client: MakeClient, fake: FakeAdobe
) -> None:
    """With an empty webhook path the old path answers 404 to POST and GET, /metrics and the
    probes answer, and only the journal's notification series exist."""
    client, registry, _ = await make_client(
        **adobe_settings(fake, journal_url=fake.journal_url, webhook_path="")
    )
    assert (await client.post("/webhook", data=b"{}")).status == 404
    assert (await client.get("/webhook?challenge=x")).status == 404
    for path in ("/metrics", "/healthz", "/readyz"):
        assert (await client.get(path)).status == 200, path
    run = {"kind": "run", "outcome": "recorded"}
    assert registry.get_sample_value(NOTIFICATIONS, {"source": "webhook", **run}) is None
    assert registry.get_sample_value(NOTIFICATIONS, {"source": "journal", **run}) == 0
    assert registry.get_sample_value(NOTIFICATIONS, {"source": "flow_service", **run}) is None
    assert registry.get_sample_value("aep_exporter_journal_cursor_resets_total") == 0


async def test_every_configured_source_has_its_series_at_zero(
    make_client: MakeClient, fake: FakeAdobe
) -> None:
    """Webhook, journal and reconciliation on: each source's children exist from the start."""
    _, registry, _ = await make_client(
        **adobe_settings(fake, journal_url=fake.journal_url, reconcile_interval=3600)
    )
    for source in ("webhook", "journal", "flow_service"):
        labels = {"source": source, "kind": "run", "outcome": "duplicate"}
        assert registry.get_sample_value(NOTIFICATIONS, labels) == 0, source
