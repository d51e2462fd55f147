"""TokenStore: encrypted tokens in qbsync.connections, refresh single-flight across
processes (two asyncpg pools stand for two daemons), invalid_grant -> needs_reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from qbsync.connect import save_connection
from qbsync.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator
from qbsync.errors import ReconnectRequired
from qbsync.qbo import oauth
from qbsync.qbo.client import QboClient
from qbsync.tokens import TokenStore
from qbsync.vault import Vault, generate_key

BASE = "http://qbo.emulator"
ENDPOINTS = oauth.OAuthEndpoints(
    authorization_endpoint=f"{BASE}/connect/oauth2",
    token_endpoint=f"{BASE}/oauth2/v1/tokens/bearer",
    revocation_endpoint=f"{BASE}/v2/oauth2/tokens/revoke",
)
CLIENT = oauth.ClientCredentials(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
TOKEN_ROUTE = "/oauth2/v1/tokens/bearer"


class Env:
    def __init__(self, emu: Emulator, realm: str, http: httpx.AsyncClient, vault: Vault,
                 pools: tuple[asyncpg.Pool, asyncpg.Pool], first: oauth.TokenSet) -> None:
        self.emu, self.realm, self.http, self.vault, self.pools = emu, realm, http, vault, pools
        self.first = first

    def store(self, n: int = 0, **kwargs: object) -> TokenStore:
        return TokenStore(self.pools[n], self.vault, self.realm, http=self.http, client=CLIENT,
                          endpoints=ENDPOINTS, **kwargs)  # type: ignore[arg-type]

    def refresh_calls(self, status: int | None = None) -> int:
        return self.emu.request_count("POST", TOKEN_ROUTE, status)


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[Env]:
    emu = Emulator()
    realm = emu.create_company("Token Shop")
    vault = Vault.parse(generate_key("k1"))
    pool_a = await asyncpg.create_pool(db_url, min_size=1, max_size=3)
    pool_b = await asyncpg.create_pool(db_url, min_size=1, max_size=3)
    try:
        async with emu.client(BASE) as http:
            first = oauth.TokenSet.from_response(emu.issue_tokens(realm))
            await save_connection(pool_a, vault, realm, first, api_base_url=BASE,
                                  company_name="Token Shop", company_info={"CompanyName": "x"},
                                  environment="sandbox")
            yield Env(emu, realm, http, vault, (pool_a, pool_b), first)
    finally:
        await pool_a.close()
        await pool_b.close()


async def row(env: Env) -> asyncpg.Record:
    record = await env.pools[0].fetchrow(
        "SELECT * FROM qbsync.connections WHERE realm_id = $1", env.realm)
    assert record is not None
    return record


async def api_works(env: Env, store: TokenStore) -> bool:
    client = QboClient(env.http, base_url=BASE, realm_id=env.realm, tokens=store)
    info = await client.company_info()
    return bool(info["CompanyName"])


async def test_saved_connection_is_encrypted_and_loads(env: Env) -> None:
    r = await row(env)
    assert r["key_id"] == "k1"
    assert env.first.access_token.encode() not in bytes(r["tokens"])
    assert env.first.refresh_token.encode() not in bytes(r["tokens"])
    assert (r["status"], r["token_generation"], r["environment"]) == ("connected", 1, "sandbox")
    assert r["access_expires_at"] == env.first.expires_at
    store = env.store()
    assert await store.access_token() == env.first.access_token
    assert store.api_base_url == BASE
    assert env.first.access_token not in repr(store)
    assert env.first.access_token not in repr(env.first)
    assert env.first.refresh_token not in repr(env.first)
    assert env.refresh_calls() == 0


async def test_two_processes_refreshing_at_once_refresh_once(env: Env) -> None:
    a, b = env.store(0), env.store(1)
    await a.load()
    await b.load()
    env.emu.expire_access_tokens(env.realm)
    # Slow token endpoint: both refreshes are in progress at the same time.
    env.emu.set_latency(0.2)
    token_a, token_b = await asyncio.gather(a.refresh(env.first.access_token),
                                            b.refresh(env.first.access_token))
    env.emu.set_latency(None)
    assert token_a == token_b != env.first.access_token
    assert a.refreshes + b.refreshes == 1
    # a second refresh would have used a superseded refresh token: invalid_grant (400)
    assert env.refresh_calls() == 1
    assert env.refresh_calls(400) == 0
    r = await row(env)
    assert (r["token_generation"], r["status"]) == (2, "connected")
    assert r["refreshed_at"] is not None
    assert await api_works(env, a)
    assert await api_works(env, b)


async def test_coroutines_of_one_process_refresh_once(env: Env) -> None:
    store = env.store()
    await store.load()
    env.emu.set_latency(0.05)
    tokens = await asyncio.gather(*(store.refresh(env.first.access_token) for _ in range(8)))
    env.emu.set_latency(None)
    assert len(set(tokens)) == 1
    assert env.refresh_calls() == 1


async def test_stale_process_adopts_the_refreshed_tokens(env: Env) -> None:
    a, b = env.store(0), env.store(1)
    await a.load()
    await b.load()
    env.emu.expire_access_tokens(env.realm)
    new = await a.refresh(env.first.access_token)
    # b still holds the first token; QuickBooks rejects it; b finds a's pair under the lock
    assert b.generation == 1
    assert await b.refresh(env.first.access_token) == new
    assert b.generation == 2
    assert env.refresh_calls() == 1
    assert b.refreshes == 0


async def test_client_401_goes_through_the_store(env: Env) -> None:
    store = env.store()
    env.emu.expire_access_tokens(env.realm)
    assert await api_works(env, store)
    assert env.refresh_calls() == 1
    assert (await row(env))["token_generation"] == 2
    logged = await env.pools[0].fetchval(
        "SELECT count(*) FROM qbsync.integration_logs WHERE operation = 'token.refresh' "
        "AND status = 'info' AND realm_id = $1", env.realm)
    assert logged == 1


async def test_proactive_refresh_within_five_minutes_of_expiry(env: Env) -> None:
    late = env.first.expires_at - timedelta(minutes=4)
    store = env.store(clock=lambda: late)
    token = await store.access_token()
    assert token != env.first.access_token
    assert env.refresh_calls() == 1
    assert await store.access_token() == token  # cached, fresh for another hour
    assert env.refresh_calls() == 1
    early = env.store(1, clock=lambda: env.first.expires_at - timedelta(minutes=10))
    await early.access_token()
    assert env.refresh_calls() == 1


async def test_invalid_grant_marks_needs_reconnect_and_keeps_tokens(env: Env) -> None:
    before = await row(env)
    env.emu.revoke_grants(env.realm)
    store = env.store()
    await store.load()
    with pytest.raises(ReconnectRequired) as exc:
        await store.refresh(env.first.access_token)
    assert exc.value.realm_id == env.realm
    assert env.first.refresh_token not in str(exc.value)
    after = await row(env)
    assert after["status"] == "needs_reconnect"
    assert "invalid_grant" in after["last_error"]
    assert bytes(after["tokens"]) == bytes(before["tokens"])  # never wiped
    assert after["token_generation"] == before["token_generation"]
    calls = env.refresh_calls()
    # every process now pauses the realm without calling Intuit again
    with pytest.raises(ReconnectRequired):
        await env.store(1).access_token()
    with pytest.raises(ReconnectRequired):
        await store.refresh(env.first.access_token)
    assert env.refresh_calls() == calls
    failed = await env.pools[0].fetchval(
        "SELECT count(*) FROM qbsync.integration_logs WHERE operation = 'token.refresh' "
        "AND status = 'failed' AND error_code = 'invalid_grant'")
    assert failed == 1


async def test_invalid_grant_in_a_200_body_is_not_a_success() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"error": "invalid_grant"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(oauth.InvalidGrant):
            await oauth.refresh(http, CLIENT, "AB11old", endpoints=ENDPOINTS)


async def test_reconnect_restores_the_connection(env: Env) -> None:
    env.emu.revoke_grants(env.realm)
    store = env.store()
    await store.load()
    with pytest.raises(ReconnectRequired):
        await store.refresh(env.first.access_token)
    fresh = oauth.TokenSet.from_response(env.emu.issue_tokens(env.realm))
    generation = await save_connection(env.pools[1], env.vault, env.realm, fresh,
                                       api_base_url=BASE)
    assert generation == 2
    r = await row(env)
    assert (r["status"], r["last_error"]) == ("connected", None)
    assert await env.store().access_token() == fresh.access_token


async def test_one_active_company(env: Env) -> None:
    other = env.emu.create_company("Second")
    tokens = oauth.TokenSet.from_response(env.emu.issue_tokens(other))
    await save_connection(env.pools[0], env.vault, other, tokens, api_base_url=BASE)
    active = await env.pools[0].fetch(
        "SELECT realm_id FROM qbsync.connections WHERE active")
    assert [r["realm_id"] for r in active] == [other]
    sandbox = env.emu.create_company("Sandbox")
    await save_connection(env.pools[0], env.vault, sandbox,
                          oauth.TokenSet.from_response(env.emu.issue_tokens(sandbox)),
                          api_base_url=BASE, active=False)
    active = await env.pools[0].fetch("SELECT realm_id FROM qbsync.connections WHERE active")
    assert [r["realm_id"] for r in active] == [other]


async def test_oauth_flows_against_the_emulator(env: Env) -> None:
    endpoints = await oauth.discover(env.http, f"{BASE}/.well-known/openid_configuration/")
    assert endpoints.token_endpoint == ENDPOINTS.token_endpoint
    url = oauth.authorization_url(CLIENT.client_id, "http://localhost/cb", "st4te",
                                  endpoints=endpoints) + f"&realm={env.realm}"
    redirect = await env.http.get(url)
    assert redirect.status_code == 302
    params = httpx.URL(redirect.headers["location"]).params
    assert params["state"] == "st4te"
    tokens = await oauth.exchange_code(env.http, CLIENT, params["code"], "http://localhost/cb",
                                       endpoints=endpoints)
    assert tokens.expires_at > datetime.now(UTC) + timedelta(minutes=59)
    assert tokens.refresh_expires_at is not None
    with pytest.raises(oauth.InvalidGrant):  # codes are single use
        await oauth.exchange_code(env.http, CLIENT, params["code"], "http://localhost/cb",
                                  endpoints=endpoints)
    await oauth.revoke(env.http, CLIENT, tokens.refresh_token, endpoints=endpoints)
    with pytest.raises(oauth.InvalidGrant):
        await oauth.refresh(env.http, CLIENT, tokens.refresh_token, endpoints=endpoints)
    bad = oauth.ClientCredentials(CLIENT.client_id, "wrong")
    assert "wrong" not in repr(bad)
    with pytest.raises(oauth.OAuthError) as exc:
        await oauth.refresh(env.http, bad, env.first.refresh_token, endpoints=endpoints)
    assert not isinstance(exc.value, oauth.InvalidGrant)
    assert exc.value.error == "invalid_client"
