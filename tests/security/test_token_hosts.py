"""The bearer token and the client secret go to QuickBooks and nowhere else.

The attack: a member of qbsync_daemon (which may update qbsync.connections) points
api_base_url at a host of its own, for the daemon to send every request there with
``Authorization: Bearer …``. Every caller that sends a token or the client secret (the
daemon's API calls, a token refresh, `connect`, `disconnect`'s revoke) is tried with a
host the settings do not allow; a `Router` stands in for the other host and records what
reached it: nothing may.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import psycopg
import pytest

from qbsync import daemon
from qbsync.config import Settings, load_settings
from qbsync.connect import EMULATOR_DISCOVERY, Target, connect, disconnect, headless_browser
from qbsync.emulator import Emulator
from qbsync.emulator.server import EmulatorServer
from qbsync.errors import ConfigError, QbsyncError
from qbsync.qbo import oauth
from qbsync.qbo.client import QboClient
from qbsync.qbo.endpoints import EndpointPolicy, EndpointRefused, http_client
from qbsync.qbo.errors import QboError
from qbsync.tokens import TokenStore
from qbsync.vault import Vault
from tests.daemon_support import EMULATOR_URL, Shop, connect_shop, drained, eventually
from tests.security.recording import Router, discovery_document
from tests.support import PG_HOST, PG_PORT, conn_url, url_for

EVIL = "https://evil.example"
LOCAL = EndpointPolicy.of(allow_local=True)


@pytest.fixture
def emu() -> Emulator:
    return Emulator(limits=False)


@pytest.fixture
async def shop(dixis_db: psycopg.Connection, emu: Emulator) -> Shop:
    return await connect_shop(conn_url(dixis_db), emu, drift_interval=0)


@pytest.fixture
def daemon_member(dixis_db: psycopg.Connection) -> Iterator[str]:
    """A login role that is only a member of qbsync_daemon (unique to this test run)."""
    role = f"sec_daemon_member_{os.getpid()}"  # not qbsync_*: tests list those
    with psycopg.connect(url_for("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.execute(f'CREATE ROLE "{role}" LOGIN IN ROLE qbsync_daemon')
    try:
        yield f"postgresql://{role}@{PG_HOST}:{PG_PORT}/{dixis_db.info.dbname}"
    finally:
        with psycopg.connect(url_for("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


async def run_until_refused_or_leaked(settings: Settings, router: Router
                                      ) -> BaseException | None:
    """Run the daemon until it stops by itself or something reached another host; what
    stopped it (None if it was still running)."""
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(settings, stop=stop, transport=router))

    async def settled() -> bool:
        return task.done() or bool(router.elsewhere)

    try:
        await eventually(settled, 30, "the daemon to refuse or to send elsewhere")
    finally:
        stop.set()
        await asyncio.wait({task}, timeout=30)
    return task.exception() if task.done() else None


# --- the daemon's API calls ---------------------------------------------------------------

@pytest.mark.parametrize("stored", ["http://evil.example", EVIL, "http://127.0.0.1:6666"])
async def test_api_url_written_into_the_database_gets_no_token(
        shop: Shop, daemon_member: str, stored: str) -> None:
    """The row may only choose among the endpoints the settings allow: not an http host,
    not another https host, not another loopback port (allow_local_quickbooks is on)."""
    conn = await asyncpg.connect(daemon_member)  # the attacker: qbsync_daemon rights only
    try:
        await conn.execute("UPDATE qbsync.connections SET api_base_url = $1", stored)
    finally:
        await conn.close()
    router = Router(shop.emu)
    stopped = await run_until_refused_or_leaked(shop.settings, router)
    assert router.leaks() == []
    assert isinstance(stopped, EndpointRefused)
    assert f"api_base_url of company {shop.realm_id} is '{stored}'" in str(stopped)
    assert shop.emu.counters.count() == 0  # refused before any request, the emulator's too


async def test_http_is_refused_without_the_local_setting(shop: Shop) -> None:
    """Settings that escaped validation (model_copy does not validate) are checked again
    at start: http to the loopback emulator needs allow_local_quickbooks."""
    settings = shop.settings.model_copy(update={"allow_local_quickbooks": False})
    router = Router(shop.emu)
    stopped = await run_until_refused_or_leaked(settings, router)
    assert isinstance(stopped, EndpointRefused)
    assert "allow_local_quickbooks" in str(stopped)
    assert shop.emu.counters.count() == 0


async def store_api_url(shop: Shop, url: str) -> None:
    conn = await asyncpg.connect(shop.url)
    try:
        await conn.execute("UPDATE qbsync.connections SET api_base_url = $1", url)
    finally:
        await conn.close()


async def test_http_to_another_host_is_refused_even_with_the_local_setting(
        shop: Shop, emu: Emulator) -> None:
    plain = "http://qbo.emulator"
    await store_api_url(shop, plain)
    settings = shop.settings.model_copy(update={"api_base_url": plain})
    router = Router(emu, hosts={"qbo.emulator"})
    stopped = await run_until_refused_or_leaked(settings, router)
    assert isinstance(stopped, EndpointRefused)
    assert "http:// is accepted only for a loopback address" in str(stopped)
    assert emu.counters.count() == 0
    with pytest.raises(ConfigError, match="api_base_url: refused"):
        load_settings(api_base_url=plain, allow_local_quickbooks=True)


async def test_an_allowed_custom_host_gets_the_token(dixis_db: psycopg.Connection,
                                                     shop: Shop, emu: Emulator) -> None:
    """A host listed in quickbooks_hosts (e.g. a forwarding proxy) is a QuickBooks like
    Intuit's own: the daemon syncs through it."""
    proxy = "https://qbo-proxy.example.com"
    await store_api_url(shop, proxy)
    settings = Settings(**{
        **shop.settings.model_dump(), "token_keys": shop.token_keys,
        "client_secret": shop.settings.client_secret, "allow_local_quickbooks": False,
        "quickbooks_hosts": ["qbo-proxy.example.com"], "api_base_url": proxy,
        "oauth_discovery_url": proxy + EMULATOR_DISCOVERY, "drift_interval": 0})
    router = Router(emu, hosts={"qbo-proxy.example.com"})
    dixis_db.execute("SELECT dixis.generate(8)")
    dixis_db.commit()
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(settings, stop=stop, transport=router))
    try:
        await drained(shop.url)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert router.leaks() == []
    assert shop.invoices()
    assert emu.counters.count(method="POST", route="/invoice", status=200) == len(shop.invoices())


# --- a token refresh ---------------------------------------------------------------------

def evil_token_endpoint(router: Router) -> None:
    """The discovery document at the emulator's address names a token endpoint elsewhere."""
    doc = {**discovery_document(EMULATOR_URL), "token_endpoint": f"{EVIL}/oauth2/token"}
    router.answers[EMULATOR_DISCOVERY.rsplit("/", 1)[1]] = lambda request: httpx.Response(
        200, json=doc)


async def test_refresh_never_goes_to_a_token_endpoint_elsewhere(shop: Shop) -> None:
    """Even when a discovery document names it: refused at start, before the refresh that
    would have sent the refresh token and the client secret there."""
    router = Router(shop.emu)
    evil_token_endpoint(router)
    shop.emu.expire_access_tokens(shop.realm_id)  # the first request needs a refresh
    stopped = await run_until_refused_or_leaked(shop.settings, router)
    assert router.leaks() == []
    assert isinstance(stopped, ConfigError)
    assert "OAuth token endpoint https://evil.example/oauth2/token is refused" in str(stopped)
    assert "from the discovery document at http://127.0.0.1:9/" in str(stopped)


async def test_the_refresh_request_itself_is_checked(shop: Shop) -> None:
    """The refresh caller: a token store holding endpoints that escaped resolution still
    sends nothing there."""
    router = Router(shop.emu)
    pool = await asyncpg.create_pool(shop.url, min_size=1, max_size=2)
    try:
        async with http_client(LOCAL, transport=router) as http:
            store = TokenStore(
                pool, Vault.parse(shop.token_keys), shop.realm_id, http=http,
                client=oauth.ClientCredentials("id", "secret"),
                endpoints=oauth.OAuthEndpoints(f"{EVIL}/a", f"{EVIL}/token", f"{EVIL}/r"))
            with pytest.raises(EndpointRefused, match=re.escape(
                    "POST request to https://evil.example/token is refused")):
                await store.refresh(await store.access_token())
    finally:
        await pool.close()
    assert router.leaks() == []


# --- disconnect's revoke -------------------------------------------------------------------

async def test_revoke_never_goes_to_a_host_from_the_database(shop: Shop,
                                                             daemon_member: str) -> None:
    """`disconnect` derived the emulator's discovery document (and so the revoke endpoint,
    which gets the refresh token and the client secret) from the stored api_base_url."""
    conn = await asyncpg.connect(daemon_member)
    try:
        await conn.execute("UPDATE qbsync.connections SET api_base_url = $1", EVIL)
    finally:
        await conn.close()
    router = Router(shop.emu)
    with pytest.raises(QbsyncError, match=r"not an API endpoint these settings "
                                          r"allow.*nothing changed"):
        await disconnect(shop.settings, transport=router)
    assert router.leaks() == []
    conn = await asyncpg.connect(shop.url)
    try:
        assert await conn.fetchval("SELECT status FROM qbsync.connections") == "connected"
    finally:
        await conn.close()


async def test_revoke_request_itself_is_checked() -> None:
    router = Router(Emulator(limits=False))
    async with http_client(LOCAL, transport=router) as http:
        with pytest.raises(EndpointRefused):
            await oauth.revoke(http, oauth.ClientCredentials("id", "secret"), "refresh-token",
                               endpoints=oauth.OAuthEndpoints("", "", f"{EVIL}/revoke"))
    assert router.leaks() == []


# --- connect -----------------------------------------------------------------------------

@pytest.fixture
async def server(emu: Emulator) -> AsyncIterator[EmulatorServer]:
    with EmulatorServer(emu) as srv:
        yield srv


def connect_settings(db_url: str, srv: EmulatorServer) -> Settings:
    from qbsync.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
    from qbsync.vault import generate_key

    return Settings(database_url=db_url, client_id=DEFAULT_CLIENT_ID,
                    client_secret=DEFAULT_CLIENT_SECRET, token_keys=generate_key("k1"),
                    api_base_url=srv.base_url, allow_local_quickbooks=True)


async def test_connect_refuses_an_api_url_elsewhere(db_url: str, emu: Emulator,
                                                    server: EmulatorServer) -> None:
    """Refused before the browser is sent anywhere: the new access token would have gone
    to the other host with the first API call."""
    emu.create_company("Dixis Α.Ε.")
    router = Router(emu, hosts={httpx.URL(server.base_url).netloc.decode()})
    opened: list[str] = []

    async def browser(url: str) -> None:
        opened.append(url)
        await headless_browser()(url)

    target = Target("custom", EVIL, server.base_url + EMULATOR_DISCOVERY)
    with pytest.raises(EndpointRefused, match=re.escape(f"{EVIL} is refused")):
        await connect(connect_settings(db_url, server), target, open_url=browser, port=0,
                      wait_seconds=20, transport=router)
    assert opened == []
    assert router.leaks() == []


async def test_connect_refuses_a_discovered_token_endpoint_elsewhere(
        db_url: str, emu: Emulator, server: EmulatorServer) -> None:
    """The code and the client secret would have gone to it."""
    emu.create_company("Dixis Α.Ε.")
    netloc = httpx.URL(server.base_url).netloc.decode()
    router = Router(emu, hosts={netloc})
    doc = {**discovery_document(server.base_url), "token_endpoint": f"{EVIL}/token"}
    router.answers["openid_configuration"] = lambda request: httpx.Response(200, json=doc)
    opened: list[str] = []

    async def browser(url: str) -> None:
        opened.append(url)
        await headless_browser()(url)

    target = Target("emulator", server.base_url, server.base_url + EMULATOR_DISCOVERY)
    with pytest.raises(EndpointRefused, match=re.escape(
            "OAuth token endpoint https://evil.example/token is refused")):
        await connect(connect_settings(db_url, server), target, open_url=browser, port=0,
                      wait_seconds=20, transport=router)
    assert opened == []
    assert router.leaks() == []


# --- every API call, and redirects ------------------------------------------------------------

class NoTokens:
    async def access_token(self) -> str:
        return "access-token"

    async def refresh(self, rejected: str) -> str:
        return "access-token"


async def test_every_api_call_is_checked() -> None:
    router = Router(Emulator(limits=False))
    async with http_client(LOCAL, transport=router) as http:
        client = QboClient(http, base_url="http://evil.example", realm_id="1", tokens=NoTokens())
        with pytest.raises(EndpointRefused, match=re.escape(
                "GET request to http://evil.example/v3/company/1/companyinfo/1 is refused")):
            await client.company_info()
    assert router.leaks() == []


async def test_a_redirect_is_not_followed(shop: Shop) -> None:
    """A 302 from the API or the token endpoint is an answer, not a way elsewhere. (This
    held before the endpoint policy too; the policy would refuse the target anyway.)"""
    router = Router(shop.emu)
    moved = httpx.Response(302, headers={"Location": f"{EVIL}/steal"})
    router.answers["/companyinfo/" + shop.realm_id] = lambda request: moved
    router.answers["/tokens/bearer"] = lambda request: moved
    async with http_client(LOCAL, transport=router) as http:
        client = QboClient(http, base_url=EMULATOR_URL, realm_id=shop.realm_id,
                           tokens=NoTokens())
        with pytest.raises(QboError):
            await client.company_info()
        with pytest.raises(oauth.OAuthError, match="HTTP 302"):
            await oauth.refresh(http, oauth.ClientCredentials("id", "secret"), "refresh",
                                endpoints=oauth.OAuthEndpoints(
                                    "", f"{EMULATOR_URL}/oauth2/v1/tokens/bearer", ""))
    assert router.leaks() == []
