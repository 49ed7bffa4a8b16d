"""`check-adobe`: one token, then one request to each configured Adobe API, one line each."""

from __future__ import annotations

import argparse
import asyncio
import time

from exporter.adobe.client import AdobeApi, AdobeClient, AdobeError
from exporter.adobe.flow_service import FlowService, flow_id_of
from exporter.adobe.ims import TokenProvider
from exporter.adobe.registration import fetch_registration
from exporter.catalogue import load_catalogue
from exporter.cli.options import settings_from_args
from exporter.config import ConfigError, Settings
from exporter.durations import format_duration

# Flow Service needs a sandbox; without one configured or catalogued, the default one.
DEFAULT_SANDBOX = "prod"


def _sandbox(settings: Settings) -> str:
    if settings.sandboxes:
        return settings.sandboxes[0]
    catalogued = sorted(key.sandbox for key in load_catalogue(settings.catalogue_path).entries)
    return catalogued[0] if catalogued else DEFAULT_SANDBOX


async def _check(settings: Settings) -> int:
    async with AdobeClient() as client:
        tokens = TokenProvider.from_settings(client, settings)
        try:
            return await _check_apis(tokens, settings)
        finally:
            await tokens.close()


async def _check_apis(tokens: TokenProvider, settings: Settings) -> int:
    try:
        await tokens.token()
    except AdobeError as exc:
        print(f"ims: FAILED {exc}")
        print("(no token: no other API was asked)")
        return 1
    expires = tokens.expires_at or time.time()
    print(f"ims: ok token expires in {format_duration(expires - time.time())}")
    failed = 0
    if settings.flow_refresh_interval > 0 or settings.reconcile_interval > 0:
        failed += await _check_flow_service(tokens, settings)
    if settings.journal_url:
        failed += await _check_journal(tokens, settings.journal_url)
    if settings.registration_url:
        failed += await _check_registration(tokens, settings.registration_url)
    return 1 if failed else 0


async def _check_flow_service(tokens: TokenProvider, settings: Settings) -> int:
    sandbox = _sandbox(settings)
    try:
        async for items in FlowService(tokens, settings.platform_url).list_flows(sandbox, limit=1):
            first = next((flow_id_of(item) for item in items), None)
            print(f"flow_service: ok sandbox={sandbox} first source flow: {first or 'none'}")
    except AdobeError as exc:
        print(f"flow_service: FAILED sandbox={sandbox}: {exc}")
        return 1
    return 0


async def _check_journal(tokens: TokenProvider, url: str) -> int:
    try:
        # `latest=true` reads no events: an empty page at the end (protocol notes §9.2).
        response = await tokens.request(AdobeApi.JOURNAL, "GET", url, params=[("latest", "true")])
    except AdobeError as exc:
        print(f"journal: FAILED {exc}")
        return 1
    print(f"journal: ok HTTP {response.status}")
    return 0


async def _check_registration(tokens: TokenProvider, url: str) -> int:
    try:
        registration = await fetch_registration(tokens, url)
    except AdobeError as exc:
        print(f"registration: FAILED {exc}")
        return 1
    print(
        f"registration: ok registration_id={registration.registration_id}"
        f" webhook_status={registration.webhook_status or '-'}"
        f" enabled={registration.enabled or '-'}"
        f" delivery_type={registration.delivery_type or '-'}"
        f" event_delivery_format={','.join(registration.delivery_formats) or '-'}"
        f" healthy={'yes' if registration.healthy else 'NO'}"
    )
    return 0


def cmd_check_adobe(args: argparse.Namespace) -> int:
    """Check the Adobe credentials and each configured API; exit 1 if any failed."""
    settings = settings_from_args(args)
    if not settings.enabled:
        raise ConfigError(
            "no Adobe credentials configured: set AEP_EXPORTER_IMS_CLIENT_ID, _CLIENT_SECRET,"
            " _SCOPES and _ORG_ID"
        )
    return asyncio.run(_check(settings))
