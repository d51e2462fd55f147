"""`qbsync rotate-key`: tokens re-encrypted under the new primary key, under the realm's
refresh lock, without bumping token_generation, while token refreshes and a running daemon
carry on; refused (changing nothing) when a key is missing or a ciphertext is broken."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import psycopg
import pytest
from pydantic import SecretStr

from qbsync.config import Settings
from qbsync.connect import save_connection
from qbsync.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator
from qbsync.errors import TokensUnreadable
from qbsync.qbo import oauth
from qbsync.qbo.client import QboClient
from qbsync.rotate_key import RotateError, rotate
from qbsync.tokens import TokenStore
from qbsync.vault import Vault, generate_key
from tests.daemon_support import connect_shop, drained, running
from tests.support import conn_url

BASE = "http://qbo.emulator"
ENDPOINTS = oauth.OAuthEndpoints(
    authorization_endpoint=f"{BASE}/connect/oauth2",
    token_endpoint=f"{BASE}/oauth2/v1/tokens/bearer",
    revocation_endpoint=f"{BASE}/v2/oauth2/tokens/revoke",
)
CLIENT = oauth.ClientCredentials(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
OLD = generate_key("k1")
NEW = generate_key("k2")


def settings(url: str, ring: str) -> Settings:
    return Settings(database_url=url, token_keys=ring)


@dataclass
class Env:
    url: str
    emu: Emulator
    realms: list[str]
    pool: asyncpg.Pool

    async def rows(self) -> dict[str, asyncpg.Record]:
        return {r["realm_id"]: r for r in await self.pool.fetch(
            "SELECT realm_id, key_id, tokens, token_generation FROM qbsync.connections")}


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[Env]:
    emu = Emulator(limits=False)
    vault = Vault.parse(OLD)
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    realms = []
    try:
        for n, name in enumerate(("Shop A", "Shop B")):
            realm = emu.create_company(name)
            tokens = oauth.TokenSet.from_response(emu.issue_tokens(realm))
            await save_connection(pool, vault, realm, tokens, api_base_url=BASE,
                                  company_name=name, environment="emulator", active=n == 0)
            realms.append(realm)
        yield Env(db_url, emu, realms, pool)
    finally:
        await pool.close()


async def test_reencrypts_every_row_under_the_new_key(env: Env) -> None:
    before = await env.rows()
    seen: list[tuple[int, int, str, str]] = []
    result = await rotate(settings(env.url, f"{NEW},{OLD}"), new_key_id="k2",
                          progress=lambda *a: seen.append(a))
    assert (result.total, result.reencrypted, result.already) == (2, 2, 0)
    assert result.by_key == {"k2": 2}
    assert result.complete
    assert [s[:2] for s in seen] == [(1, 2), (2, 2)]
    after = await env.rows()
    only_new = Vault.parse(NEW)
    for realm in env.realms:
        assert after[realm]["key_id"] == "k2"
        assert after[realm]["token_generation"] == before[realm]["token_generation"]
        assert only_new.decrypt(realm, after[realm]["tokens"], "k2") == \
            Vault.parse(OLD).decrypt(realm, before[realm]["tokens"], "k1")
    logged = await env.pool.fetchval(
        "SELECT count(*) FROM qbsync.integration_logs WHERE operation = 'token.rekey' "
        "AND actor LIKE 'cli%'")
    assert logged == 2
    # Idempotent: nothing left to do.
    again = await rotate(settings(env.url, f"{NEW},{OLD}"), new_key_id="k2")
    assert (again.reencrypted, again.already) == (0, 2)


async def test_dry_run_changes_nothing(env: Env) -> None:
    result = await rotate(settings(env.url, f"{NEW},{OLD}"), dry_run=True)
    assert result.reencrypted == 0
    assert result.by_key == {"k1": 2}
    assert {r["key_id"] for r in (await env.rows()).values()} == {"k1"}


async def test_refuses_when_the_old_key_is_not_in_the_ring(env: Env) -> None:
    with pytest.raises(RotateError, match=r"lacks the key of .*'k1'"):
        await rotate(settings(env.url, NEW))
    assert {r["key_id"] for r in (await env.rows()).values()} == {"k1"}


async def test_refuses_when_the_new_key_is_not_first(env: Env) -> None:
    with pytest.raises(RotateError, match="not first"):
        await rotate(settings(env.url, f"{OLD},{NEW}"), new_key_id="k2")
    with pytest.raises(RotateError, match="not in token_keys"):
        await rotate(settings(env.url, f"{OLD},{NEW}"), new_key_id="k3")


async def test_refuses_when_a_ciphertext_does_not_decrypt(env: Env) -> None:
    broken = env.realms[1]
    await env.pool.execute(  # flip one byte of the ciphertext
        "UPDATE qbsync.connections SET tokens = set_byte(tokens, 20, get_byte(tokens, 20) # 1) "
        "WHERE realm_id = $1", broken)
    with pytest.raises(RotateError, match=f"cannot decrypt: .*realm {broken}"):
        await rotate(settings(env.url, f"{NEW},{OLD}"))
    # Nothing changed, not even the rows that would have decrypted.
    assert {r["key_id"] for r in (await env.rows()).values()} == {"k1"}


async def test_refreshes_keep_working_across_rotations(env: Env) -> None:
    """A daemon's TokenStore (restarted with the new ring) refreshes again and again while
    rotate-key runs back and forth: no refresh is lost, no rotation overwrites one."""
    realm = env.realms[0]
    ring = Vault.parse(f"{NEW},{OLD}")
    async with env.emu.client(BASE) as http:
        store = TokenStore(env.pool, ring, realm, http=http, client=CLIENT, endpoints=ENDPOINTS)
        api = QboClient(http, base_url=BASE, realm_id=realm, tokens=store)
        start = (await env.rows())[realm]["token_generation"]

        async def refresher() -> None:
            for _ in range(20):
                await store.refresh(await store.access_token())
                assert (await api.company_info())["CompanyName"] == "Shop A"
                await asyncio.sleep(0)

        async def rotator() -> None:
            for i in range(20):
                order = f"{NEW},{OLD}" if i % 2 == 0 else f"{OLD},{NEW}"
                await rotate(settings(env.url, order))

        await asyncio.gather(refresher(), rotator())
        result = await rotate(settings(env.url, f"{NEW},{OLD}"), new_key_id="k2")
        assert result.complete
        row = (await env.rows())[realm]
        assert row["token_generation"] == start + store.refreshes == start + 20
        stored = Vault.parse(NEW).decrypt(realm, row["tokens"], "k2")
        grant = next(g for g in env.emu.oauth.grants.values() if g.realm_id == realm)
        assert stored["refresh_token"] == grant.refresh_token  # the latest one, not lost
        assert (await api.company_info())["CompanyName"] == "Shop A"

        # Why the new ring must reach the daemons first: one with only the old key cannot
        # read the re-encrypted row (it pauses the company: tests/security/test_key_rotation).
        stale = TokenStore(env.pool, Vault.parse(OLD), realm, http=http, client=CLIENT,
                           endpoints=ENDPOINTS)
        with pytest.raises(TokensUnreadable, match="not configured"):
            await stale.load()


async def test_running_daemon_syncs_across_rotation(dixis_db: psycopg.Connection) -> None:
    url = conn_url(dixis_db)
    emu = Emulator(limits=False)
    shop = await connect_shop(url, emu)
    old = shop.settings.token_keys.get_secret_value()  # type: ignore[union-attr]
    ring = SecretStr(f"{generate_key('k2')},{old}")
    dixis_db.execute("SELECT dixis.generate(30)")
    dixis_db.commit()
    async with running(shop, token_keys=ring):
        result = await rotate(settings(url, ring.get_secret_value()), new_key_id="k2")
        assert result.reencrypted == 1
        emu.expire_access_tokens(shop.realm_id)  # the daemon must refresh: reads the k2 row
        dixis_db.execute("SELECT dixis.generate(10)")
        dixis_db.commit()
        await drained(url)
    completed = dixis_db.execute(
        "SELECT count(*) FROM dixis.orders WHERE status = 'completed' "
        "AND quickbooks_sync_status = 'synced'").fetchone()
    total = dixis_db.execute(
        "SELECT count(*) FROM dixis.orders WHERE status = 'completed'").fetchone()
    assert completed == total
    assert total is not None
    assert len(shop.invoices()) == total[0]
    row = dixis_db.execute("SELECT key_id FROM qbsync.connections").fetchone()
    assert row == ("k2",)
    ops = dict(dixis_db.execute(
        "SELECT operation, count(*) FROM qbsync.integration_logs "
        "WHERE operation LIKE 'token.%' GROUP BY 1").fetchall())
    assert ops.get("token.rekey") == 1
    assert ops.get("token.refresh", 0) >= 1
    assert dixis_db.execute("SELECT count(*) FROM qbsync.outbox WHERE state = 'dead'"
                            ).fetchone() == (0,)
