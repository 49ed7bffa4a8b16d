"""TokenProvider against the fake IMS: caching, single flight, 401 renewal, back-off, secrecy."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import SecretStr

from exporter.adobe import fake_documents as documents
from exporter.adobe.client import AdobeApi, AdobeClient, AdobeUnauthorized, RequestResult
from exporter.adobe.fake import HANG, SERVER_ERROR, UNAUTHORIZED, Answer, FakeAdobe
from exporter.adobe.ims import (
    BACKOFF_MAX_SECONDS,
    MIN_AGE_TO_RENEW_ON_401_SECONDS,
    REFUSED_RETRY_SECONDS,
    RENEW_MARGIN_SECONDS,
    TokenProvider,
    TokenRefused,
    TokenUnavailable,
)
from exporter.adobe.settings import AdobeSettings
from tests.adobe.conftest import MakeTokens, WallClock
from tests.adobe.test_client import closed_port
from tests.support import log_text

FLOWS = AdobeApi.FLOW_SERVICE
Counted = list[tuple[AdobeApi, RequestResult]]


async def list_flows(fake: FakeAdobe, tokens: TokenProvider) -> None:
    """GET /flows in the prod sandbox with the provider's token."""
    await tokens.request(FLOWS, "GET", fake.flow_service_url + "/flows", sandbox="prod")


@pytest.fixture(autouse=True)
def prod_flows(fake: FakeAdobe) -> None:
    """One flow in the fake's prod sandbox."""
    fake.flows["prod"] = [documents.flow("f1")]


async def test_one_token_serves_many_api_calls(fake: FakeAdobe, tokens: TokenProvider) -> None:
    """Ten API calls are made with one token: IMS is asked once."""
    for _ in range(10):
        await list_flows(fake, tokens)
    assert fake.tokens_issued == 1
    assert len({r.headers["Authorization"] for r in fake.requests_to("flows")}) == 1


async def test_token_request_is_a_form_post_with_the_credentials_in_the_body(
    fake: FakeAdobe, tokens: TokenProvider
) -> None:
    """IMS gets a form POST with grant_type, client_id, client_secret and scope in the body."""
    await tokens.token()
    (request,) = fake.requests_to("ims")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.form is not None
    assert dict(request.form) == {
        "grant_type": "client_credentials",
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "scope": ",".join(sorted(fake.scopes)),
    }
    assert not request.query


async def test_each_api_gets_its_documented_headers(fake: FakeAdobe, tokens: TokenProvider) -> None:
    """Flow Service gets x-gw-ims-org-id and x-sandbox-name; I/O Events gets x-ims-org-id."""
    registration_url = fake.add_registration(documents.registration())
    await list_flows(fake, tokens)
    await tokens.request(AdobeApi.JOURNAL, "GET", fake.journal_url)
    await tokens.request(AdobeApi.REGISTRATION, "GET", registration_url)
    token = await tokens.token()
    flows, journal, registration = (
        fake.requests_to(route)[0].headers for route in ("flows", "journal", "registration")
    )
    for headers in (flows, journal, registration):
        assert headers["Authorization"] == f"Bearer {token}"
        assert headers["x-api-key"] == fake.client_id
    assert (flows["x-gw-ims-org-id"], flows["x-sandbox-name"]) == (fake.org_id, "prod")
    assert "x-ims-org-id" not in flows
    assert journal["x-ims-org-id"] == registration["x-ims-org-id"] == fake.org_id
    assert "x-gw-ims-org-id" not in journal
    assert "x-sandbox-name" not in journal
    assert registration["Accept"] == "application/hal+json"


def test_flow_service_headers_need_a_sandbox(tokens: TokenProvider) -> None:
    """A Flow Service request without a sandbox is a programming error, caught at once."""
    with pytest.raises(ValueError, match="sandbox"):
        tokens.authorized_headers(FLOWS, "t")
    with pytest.raises(ValueError, match="no token"):
        tokens.authorized_headers(AdobeApi.IMS, "t")


async def test_fifty_concurrent_callers_share_one_renewal(
    fake: FakeAdobe, tokens: TokenProvider
) -> None:
    """Fifty callers at once while IMS is slow cause one token request and get one token."""
    fake.script("ims", Answer(delay=0.2))
    got = await asyncio.gather(*(tokens.token() for _ in range(50)))
    assert len(set(got)) == 1
    assert fake.tokens_issued == 1
    assert len(fake.requests_to("ims")) == 1


async def test_token_is_renewed_ten_minutes_before_expiry(
    fake: FakeAdobe, tokens: TokenProvider, clock: WallClock, expiries: list[float]
) -> None:
    """The token is reused until 10 minutes before it expires, then renewed; expiry is reported."""
    first = await tokens.token()
    assert expiries == [clock.now + fake.expires_in]
    assert tokens.expires_at == clock.now + fake.expires_in
    clock.advance(fake.expires_in - RENEW_MARGIN_SECONDS - 1)
    assert await tokens.token() == first
    clock.advance(1)
    second = await tokens.token()
    assert second != first
    assert fake.tokens_issued == 2
    assert expiries[-1] == clock.now + fake.expires_in


async def test_short_lived_token_renews_at_half_its_life(
    fake: FakeAdobe, tokens: TokenProvider, clock: WallClock
) -> None:
    """A token living less than 20 minutes is kept for half its life, not renewed per call."""
    fake.expires_in = 60
    first = await tokens.token()
    clock.advance(29)
    assert await tokens.token() == first
    clock.advance(1)
    assert await tokens.token() != first


async def test_a_401_renews_the_token_once_and_retries(
    fake: FakeAdobe, tokens: TokenProvider, clock: WallClock, counted: Counted
) -> None:
    """An API 401 on a revoked token leads to exactly one new token and one retry."""
    await list_flows(fake, tokens)
    clock.advance(MIN_AGE_TO_RENEW_ON_401_SECONDS)
    fake.revoke_tokens()
    await list_flows(fake, tokens)
    assert fake.tokens_issued == 2
    assert counted == [
        (AdobeApi.IMS, RequestResult.OK),
        (FLOWS, RequestResult.OK),
        (FLOWS, RequestResult.UNAUTHORIZED),
        (AdobeApi.IMS, RequestResult.OK),
        (FLOWS, RequestResult.OK),
    ]


async def test_fifty_callers_hit_by_401_cause_one_new_token(
    fake: FakeAdobe, tokens: TokenProvider, clock: WallClock
) -> None:
    """Fifty concurrent calls that all get a 401 share one renewal."""
    await list_flows(fake, tokens)
    clock.advance(MIN_AGE_TO_RENEW_ON_401_SECONDS)
    fake.revoke_tokens()
    fake.script("ims", Answer(delay=0.1))
    await asyncio.gather(*(list_flows(fake, tokens) for _ in range(50)))
    assert fake.tokens_issued == 2


async def test_a_401_on_a_fresh_token_is_not_renewed(
    fake: FakeAdobe, tokens: TokenProvider
) -> None:
    """A 401 moments after the token was issued is raised, not answered with a new token."""
    await list_flows(fake, tokens)
    fake.script("flows", UNAUTHORIZED)
    with pytest.raises(AdobeUnauthorized):
        await list_flows(fake, tokens)
    assert fake.tokens_issued == 1


async def test_a_403_is_not_renewed(
    fake: FakeAdobe, tokens: TokenProvider, clock: WallClock
) -> None:
    """A 403 (permissions, API key) never renews the token."""
    await list_flows(fake, tokens)
    clock.advance(MIN_AGE_TO_RENEW_ON_401_SECONDS)
    fake.script("flows", Answer.json(403, {"error_code": "403003"}))
    with pytest.raises(AdobeUnauthorized):
        await list_flows(fake, tokens)
    assert fake.tokens_issued == 1


async def test_invalidating_a_replaced_token_does_nothing(
    fake: FakeAdobe, tokens: TokenProvider, clock: WallClock
) -> None:
    """invalidate() of a token that was already replaced keeps the newer token."""
    old = await tokens.token()
    clock.advance(MIN_AGE_TO_RENEW_ON_401_SECONDS)
    tokens.invalidate(old)
    new = await tokens.token()
    clock.advance(MIN_AGE_TO_RENEW_ON_401_SECONDS)
    tokens.invalidate(old)
    assert await tokens.token() == new
    assert fake.tokens_issued == 2


async def test_refused_credential_is_not_retried_for_five_minutes(
    fake: FakeAdobe, make_tokens: MakeTokens, clock: WallClock
) -> None:
    """invalid_client raises TokenRefused; callers within 5 minutes get it without a request."""
    tokens = make_tokens(client_secret=SecretStr("wrong-secret"))
    with pytest.raises(TokenRefused, match="HTTP 401 invalid_client") as first:
        await tokens.token()
    assert first.value.retry_after == REFUSED_RETRY_SECONDS
    clock.advance(REFUSED_RETRY_SECONDS - 1)
    for _ in range(3):
        with pytest.raises(TokenRefused) as again:
            await tokens.token()
    assert again.value.retry_after == 1
    assert len(fake.requests_to("ims")) == 1
    clock.advance(1)
    with pytest.raises(TokenRefused):
        await tokens.token()
    assert len(fake.requests_to("ims")) == 2


async def test_invalid_scope_is_a_refused_credential(
    fake: FakeAdobe, make_tokens: MakeTokens
) -> None:
    """An unknown scope is refused as IMS names it (invalid_scope, HTTP 400)."""
    tokens = make_tokens(scopes=["openid", "not_a_scope"])
    with pytest.raises(TokenRefused, match="HTTP 400 invalid_scope") as caught:
        await tokens.token()
    assert caught.value.result is RequestResult.INVALID


async def test_throttling_waits_for_retry_after(
    fake: FakeAdobe, tokens: TokenProvider, clock: WallClock
) -> None:
    """A 429 with Retry-After makes callers wait that long without asking IMS again."""
    fake.script("ims", Answer.throttled("30"))
    with pytest.raises(TokenUnavailable) as caught:
        await tokens.token()
    assert caught.value.retry_after == 30
    assert caught.value.result is RequestResult.THROTTLED
    clock.advance(29)
    with pytest.raises(TokenUnavailable):
        await tokens.token()
    assert len(fake.requests_to("ims")) == 1
    clock.advance(1)
    await tokens.token()
    assert fake.tokens_issued == 1


async def test_server_errors_back_off_exponentially_up_to_five_minutes(
    fake: FakeAdobe, tokens: TokenProvider, clock: WallClock
) -> None:
    """Consecutive 5xx answers double the wait (with jitter) from 1 s up to 5 minutes."""
    fake.script("ims", *[SERVER_ERROR] * 12)
    waits = []
    for _ in range(12):
        with pytest.raises(TokenUnavailable) as caught:
            await tokens.token()
        assert caught.value.retry_after is not None
        waits.append(caught.value.retry_after)
        clock.advance(caught.value.retry_after)
    # Jitter is pinned at its middle: three quarters of each step.
    assert waits[:4] == [0.75, 1.5, 3.0, 6.0]
    assert waits[-1] == BACKOFF_MAX_SECONDS * 0.75
    assert len(fake.requests_to("ims")) == 12
    await tokens.token()


async def test_unreachable_ims_backs_off_as_a_network_error(
    make_tokens: MakeTokens, counted: Counted
) -> None:
    """An IMS nobody answers on raises TokenUnavailable counted network_error."""
    tokens = make_tokens(url=f"http://127.0.0.1:{closed_port()}/ims/token/v3")
    with pytest.raises(TokenUnavailable) as caught:
        await tokens.token()
    assert caught.value.result is RequestResult.NETWORK_ERROR
    assert counted == [(AdobeApi.IMS, RequestResult.NETWORK_ERROR)]


async def test_an_answer_without_a_token_is_invalid(
    fake: FakeAdobe, tokens: TokenProvider, counted: Counted
) -> None:
    """A 200 from IMS without access_token or expires_in is counted invalid and backed off."""
    fake.script("ims", Answer.json(200, {"access_token": "t", "expires_in": "soon"}))
    with pytest.raises(TokenUnavailable, match="no expires_in"):
        await tokens.token()
    assert counted == [(AdobeApi.IMS, RequestResult.INVALID)]


async def test_a_failed_renewal_keeps_serving_the_still_valid_token(
    fake: FakeAdobe, tokens: TokenProvider, clock: WallClock
) -> None:
    """While renewal fails, the old token is served until a minute before it expires."""
    first = await tokens.token()
    clock.advance(fake.expires_in - RENEW_MARGIN_SECONDS)
    fake.script("ims", SERVER_ERROR)
    assert await tokens.token() == first
    assert await tokens.token() == first  # within the back-off: no second request
    assert len(fake.requests_to("ims")) == 2
    clock.advance(RENEW_MARGIN_SECONDS - 30)
    assert await tokens.token() != first


async def test_a_cancelled_caller_does_not_cancel_the_renewal(
    fake: FakeAdobe, tokens: TokenProvider
) -> None:
    """A caller that gives up leaves the renewal running for the others."""
    fake.script("ims", Answer(delay=0.2))
    quitter = asyncio.ensure_future(tokens.token())
    stayer = asyncio.ensure_future(tokens.token())
    await asyncio.sleep(0.05)
    quitter.cancel()
    assert await stayer
    assert fake.tokens_issued == 1


async def test_close_cancels_a_renewal_in_flight(fake: FakeAdobe, tokens: TokenProvider) -> None:
    """close() ends a renewal that hangs; its waiting caller gets TokenUnavailable."""
    fake.script("ims", HANG)
    waiting = asyncio.ensure_future(tokens.token())
    await asyncio.sleep(0.05)
    await tokens.close()
    with pytest.raises(TokenUnavailable, match="closed"):
        await waiting


async def test_secret_and_token_never_reach_logs_errors_or_repr(
    fake: FakeAdobe,
    make_tokens: MakeTokens,
    clock: WallClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Neither the client secret nor a token appears in a log line, an error or a repr."""
    caplog.set_level(logging.DEBUG)
    secret = fake.client_secret
    tokens = make_tokens()
    echo = {"error": "invalid_client", "error_description": f"bad secret {secret}"}
    fake.script("ims", Answer.json(401, echo))
    errors: list[BaseException] = []
    with pytest.raises(TokenRefused) as refused:
        await tokens.token()
    errors.append(refused.value)
    assert "bad secret ***" in str(refused.value)
    clock.advance(REFUSED_RETRY_SECONDS)
    fake.script("ims", SERVER_ERROR)
    with pytest.raises(TokenUnavailable) as unavailable:
        await tokens.token()
    errors.append(unavailable.value)
    clock.advance(REFUSED_RETRY_SECONDS)
    token = await tokens.token()
    clock.advance(MIN_AGE_TO_RENEW_ON_401_SECONDS)
    fake.revoke_tokens()
    await list_flows(fake, tokens)
    assert fake.tokens_issued == 2
    texts = [
        log_text(caplog.records),
        repr(tokens),
        *(str(e) for e in errors),
        *(repr(e) for e in errors),
    ]
    for text in texts:
        assert secret not in text
        assert token not in text
    assert "IMS token obtained" in caplog.text


async def test_provider_is_built_from_settings(fake: FakeAdobe, adobe_client: AdobeClient) -> None:
    """from_settings takes the IMS URL and credentials of AdobeSettings."""
    settings = AdobeSettings(
        ims_url=fake.ims_url,
        ims_client_id=fake.client_id,
        ims_client_secret=fake.client_secret,
        ims_scopes=",".join(sorted(fake.scopes)),
        ims_org_id=fake.org_id,
    )
    tokens = TokenProvider.from_settings(adobe_client, settings)
    try:
        assert await tokens.token()
    finally:
        await tokens.close()
    with pytest.raises(ValueError, match="not configured"):
        TokenProvider.from_settings(adobe_client, AdobeSettings())
