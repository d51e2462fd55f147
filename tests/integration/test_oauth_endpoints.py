"""OAuth without a discovery document, and token refreshes on the emulator's time scale.

* `qbsync connect` works when the server has no OpenID discovery document: the
  authorization, token and revocation endpoints can be set directly, and Intuit's
  documented ones are the fallback.
* The refresh margin (5 minutes before expiry) and the token lifetimes follow the time
  scale: against an emulator at 60x, an access token lives 60 real seconds, refreshed 5 s
  before it expires, never on every request and never after a 401.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from qbsync.config import Settings
from qbsync.connect import EMULATOR_DISCOVERY, Target, connect, disconnect, headless_browser
from qbsync.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator
from qbsync.emulator.server import EmulatorServer
from qbsync.qbo import oauth
from qbsync.qbo.endpoints import EndpointPolicy, EndpointRefused, http_client
from qbsync.qbo.errors import TransientError
from qbsync.vault import generate_key
from tests.daemon_support import connect_shop, running
from tests.support import conn_url

COMPANY = "Dixis Α.Ε."
LOCAL = EndpointPolicy.of(allow_local=True)


@pytest.fixture
def emu() -> Emulator:
    return Emulator(limits=False)


@pytest.fixture
def server(emu: Emulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emu) as srv:
        yield srv


def direct_settings(db_url: str, srv: EmulatorServer, discovery: str) -> Settings:
    """The emulator's endpoints set directly."""
    return Settings(
        database_url=db_url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
        token_keys=generate_key("k1"), api_base_url=srv.base_url, allow_local_quickbooks=True,
        oauth_discovery_url=discovery,
        oauth_authorization_endpoint=f"{srv.base_url}/connect/oauth2",
        oauth_token_endpoint=f"{srv.base_url}/oauth2/v1/tokens/bearer",
        oauth_revocation_endpoint=f"{srv.base_url}/v2/oauth2/tokens/revoke")


def discovery_reads(emu: Emulator) -> int:
    return emu.counters.count(route="openid")


async def test_connect_without_a_discovery_document(db_url: str, emu: Emulator,
                                                    server: EmulatorServer) -> None:
    """The server answers 404 where the document would be: connect uses the endpoints
    set directly, and disconnect revokes at the one set directly."""
    realm = emu.create_company(COMPANY)
    missing = server.base_url + "/no/.well-known/openid_configuration"
    settings = direct_settings(db_url, server, missing)
    company = await connect(settings, Target("custom", server.base_url, missing),
                            open_url=headless_browser(), port=0, wait_seconds=20)
    assert company.realm_id == realm
    gone = await disconnect(settings)
    assert gone.revoked
    grant = next(g for g in emu.oauth.grants.values() if g.realm_id == realm)
    assert grant.revoked


async def test_no_discovery_is_read_when_every_endpoint_is_set(
        db_url: str, emu: Emulator, server: EmulatorServer) -> None:
    emu.create_company(COMPANY)
    settings = direct_settings(db_url, server, server.base_url + EMULATOR_DISCOVERY)
    await connect(settings, Target("emulator", server.base_url,
                                   server.base_url + EMULATOR_DISCOVERY),
                  open_url=headless_browser(), port=0, wait_seconds=20)
    assert discovery_reads(emu) == 0
    no_discovery = settings.model_copy(update={"oauth_discovery_url": ""})
    await connect(no_discovery, Target("custom", server.base_url, ""),
                  open_url=headless_browser(), port=0, wait_seconds=20)
    assert discovery_reads(emu) == 0


def answering(status: int | None, doc: dict[str, str] | None = None) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if status is None:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status, json=doc or {"error": "no"})
    return httpx.MockTransport(handle)


@pytest.mark.parametrize("status", [404, 200])  # 200: a page without the endpoints
async def test_intuit_documented_endpoints_are_the_fallback(status: int) -> None:
    source = oauth.EndpointSettings(discovery_url="http://127.0.0.1:9/.well-known/x")
    async with http_client(LOCAL, transport=answering(status)) as http:
        found = await oauth.resolve_endpoints(http, source, LOCAL)
    assert found == oauth.PRODUCTION


async def test_an_endpoint_set_directly_wins_over_the_document() -> None:
    doc = {"authorization_endpoint": "http://127.0.0.1:9/a",
           "token_endpoint": "http://127.0.0.1:9/t", "revocation_endpoint": "http://127.0.0.1:9/r"}
    source = oauth.EndpointSettings(discovery_url="http://127.0.0.1:9/d",
                                    token_endpoint="http://127.0.0.1:8/token")
    async with http_client(LOCAL, transport=answering(200, doc)) as http:
        found = await oauth.resolve_endpoints(http, source, LOCAL)
    assert (found.authorization_endpoint, found.token_endpoint, found.revocation_endpoint) \
        == ("http://127.0.0.1:9/a", "http://127.0.0.1:8/token", "http://127.0.0.1:9/r")


@pytest.mark.parametrize("status", [None, 503])
async def test_an_unreachable_document_elsewhere_is_not_guessed(status: int | None) -> None:
    """A passing failure of another server's document: Intuit's endpoints would refuse an
    emulator's grant (and mark the company needs_reconnect), so it is an error."""
    source = oauth.EndpointSettings(discovery_url="http://127.0.0.1:9/d")
    async with http_client(LOCAL, transport=answering(status)) as http:
        with pytest.raises(TransientError):
            await oauth.resolve_endpoints(http, source, LOCAL)
    intuit = oauth.EndpointSettings()  # Intuit's own document unreachable: documented ones
    async with http_client(LOCAL, transport=answering(status)) as http:
        assert await oauth.resolve_endpoints(http, intuit, LOCAL) == oauth.PRODUCTION


async def test_endpoints_are_checked_wherever_they_come_from() -> None:
    source = oauth.EndpointSettings(discovery_url="", revocation_endpoint="http://evil.example/r")
    async with http_client(LOCAL, transport=answering(404)) as http:
        with pytest.raises(EndpointRefused, match=r"OAuth revocation endpoint .*\(set directly\)"):
            await oauth.resolve_endpoints(http, source, LOCAL)


# --- the refresh margin on the emulator's time scale ----------------------------------------

async def test_refresh_margin_follows_the_time_scale(dixis_db: psycopg.Connection) -> None:
    """At 60x an access token lives 60 real seconds. The daemon's clock and the emulator's
    are moved forward together: no refresh at every request, one refresh 5 s before the
    token expires, and never a 401 from an expired token."""
    emu = Emulator(limits=False, time_scale=60)
    shop = await connect_shop(conn_url(dixis_db), emu, rate_time_scale=60, drift_interval=0)
    async with running(shop) as d:
        store = d.tokens
        assert store.refresh_margin == 5.0
        # A token issued by the daemon's own refresh (the first one came from the test).
        emu.expire_access_tokens(shop.realm_id)
        await d.client.company_info()
        assert store.refreshes == 1
        expired = emu.counters.count(status=401)
        offset = timedelta()
        store.clock = lambda: datetime.now(UTC) + offset

        async def later(seconds: float, requests: int) -> None:
            nonlocal offset
            offset += timedelta(seconds=seconds)
            emu.clock.advance(seconds * 60)  # the same span on the emulator's clock
            for _ in range(requests):
                assert (await d.client.company_info())["CompanyName"] == COMPANY
                await asyncio.sleep(0)

        await later(30, 5)  # 30 emulated minutes into the hour
        assert store.refreshes == 1  # not every request
        await later(27, 1)  # 57 minutes: within the margin, refreshed before the request
        assert store.refreshes == 2
        await later(5, 5)  # 62: the first token has expired, the second lives on
        assert store.refreshes == 2
        assert emu.counters.count(status=401) == expired  # no request met an expired token
