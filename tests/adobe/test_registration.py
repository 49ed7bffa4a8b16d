"""Registration health through the real service: raw values, healthy only when verified."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from exporter.adobe import fake_documents as documents
from exporter.adobe.client import AdobeNotFound
from exporter.adobe.fake import FakeAdobe
from exporter.adobe.registration import RegistrationWatcher
from tests.adobe.conftest import adobe_settings, until
from tests.conftest import MakeClient
from tests.support import log_text

REGISTRATION_ID = "d1c2b3a4-0000-4000-8000-000000000001"


def series(registry: CollectorRegistry, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of one family."""
    return [
        (sample.labels, sample.value)
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    ]


async def watched(
    make_client: MakeClient, fake: FakeAdobe, **fields: object
) -> tuple[CollectorRegistry, RegistrationWatcher, str]:
    """The real app polling a registration of the fake, after its first poll."""
    url = fake.add_registration(documents.registration(**fields))  # type: ignore[arg-type]
    settings = adobe_settings(
        fake, registration_url=url, registration_poll_interval="1h", flow_refresh_interval=0
    )
    _, registry, exporter = await make_client(**settings)
    done = "aep_exporter_poll_last_success_timestamp_seconds"
    await until(lambda: registry.get_sample_value(done, {"task": "registration"}), "a poll")
    assert exporter.adobe is not None
    assert exporter.adobe.registration is not None
    return registry, exporter.adobe.registration, url


async def test_an_enabled_verified_registration_is_healthy(
    make_client: MakeClient, fake: FakeAdobe, caplog: pytest.LogCaptureFixture
) -> None:
    """Adobe's raw fields label the info series; healthy is 1; the delivery format is logged."""
    caplog.set_level(logging.INFO, logger="exporter.adobe.registration")
    registry, _, _ = await watched(make_client, fake)
    assert series(registry, "aep_events_registration_info") == [
        (
            {
                "registration_id": REGISTRATION_ID,
                "webhook_status": "verified",
                "enabled": "true",
                "delivery_type": "webhook",
            },
            1.0,
        )
    ]
    assert series(registry, "aep_events_registration_healthy") == [
        ({"registration_id": REGISTRATION_ID}, 1.0)
    ]
    assert "event_delivery_format=adobe_io" in log_text(caplog.records)


async def test_a_change_replaces_the_info_series(make_client: MakeClient, fake: FakeAdobe) -> None:
    """An unreachable, disabled hook is unhealthy, and only its new info series remains."""
    registry, watcher, url = await watched(make_client, fake)
    path = url.removeprefix(fake.base_url)
    fake.registrations[path].update(webhook_status="hook_unreachable", enabled=False)
    await watcher.poll()
    info = series(registry, "aep_events_registration_info")
    assert [(labels["webhook_status"], labels["enabled"]) for labels, _ in info] == [
        ("hook_unreachable", "false")
    ]
    assert series(registry, "aep_events_registration_healthy")[0][1] == 0.0


@pytest.mark.parametrize(
    ("status", "enabled", "healthy"),
    [("VERIFIED", True, 1.0), ("verified", False, 0.0), ("accepted", True, 0.0)],
)
async def test_healthy_needs_enabled_and_verified_in_any_casing(
    make_client: MakeClient, fake: FakeAdobe, status: str, enabled: bool, healthy: float
) -> None:
    """`verified` counts in either casing (V1 said VERIFIED), and only while enabled."""
    registry, _, _ = await watched(make_client, fake, webhook_status=status, enabled=enabled)
    assert series(registry, "aep_events_registration_healthy")[0][1] == healthy
    assert series(registry, "aep_events_registration_info")[0][0]["webhook_status"] == status


async def test_an_unknown_status_is_unhealthy_and_logged_once(
    make_client: MakeClient, fake: FakeAdobe, caplog: pytest.LogCaptureFixture
) -> None:
    """A status nobody documented counts as unhealthy; the warning comes once, not per poll."""
    caplog.set_level(logging.WARNING, logger="exporter.adobe.registration")
    registry, watcher, _ = await watched(make_client, fake, webhook_status="wobbly")
    await watcher.poll()
    await watcher.poll()
    assert series(registry, "aep_events_registration_healthy")[0][1] == 0.0
    warnings = [r for r in caplog.records if "wobbly" in log_text([r])]
    assert len(warnings) == 1


async def test_a_failing_registration_keeps_its_last_values(
    make_client: MakeClient, fake: FakeAdobe
) -> None:
    """While the resource answers 404 the last series stay (staleness shows in the last-success
    gauge), every failure is counted, and the next answer takes over."""
    registry, watcher, url = await watched(make_client, fake)
    path = url.removeprefix(fake.base_url)
    document = fake.registrations.pop(path)
    for _ in range(3):
        with pytest.raises(AdobeNotFound):
            await watcher.poll()
    assert series(registry, "aep_events_registration_healthy")[0][1] == 1.0
    failed = {"api": "registration", "result": "not_found"}
    assert registry.get_sample_value("aep_exporter_adobe_requests_total", failed) == 3.0
    fake.registrations[path] = dict(document, enabled=False)
    await watcher.poll()
    assert series(registry, "aep_events_registration_healthy")[0][1] == 0.0
