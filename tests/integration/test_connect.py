"""`qbsync connect` / `disconnect` logic against the emulator over a real socket: the OAuth
authorization-code flow driven by a headless browser, tokens stored encrypted, state checked,
the grant revoked on disconnect."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from qbsync.config import Settings
from qbsync.connect import (
    EMULATOR_DISCOVERY,
    ConnectError,
    Target,
    connect,
    disconnect,
    headless_browser,
)
from qbsync.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator
from qbsync.emulator.server import EmulatorServer
from qbsync.errors import ConfigError, QbsyncError
from qbsync.qbo import oauth
from qbsync.vault import Vault, generate_key

COMPANY = "Dixis Α.Ε."


@pytest.fixture
def server(emu: Emulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emu) as srv:
        yield srv


@pytest.fixture
def settings(db_url: str, server: EmulatorServer) -> Settings:
    # the emulator listens on a loopback address: allowed with allow_local_quickbooks
    return Settings(database_url=db_url, client_id=DEFAULT_CLIENT_ID,
                    client_secret=DEFAULT_CLIENT_SECRET, token_keys=generate_key("k1"),
                    api_base_url=server.base_url, allow_local_quickbooks=True)


def target(srv: EmulatorServer) -> Target:
    return Target("emulator", srv.base_url, srv.base_url + EMULATOR_DISCOVERY)


def issued_tokens(emu: Emulator, realm: str) -> list[str]:
    """Every access and refresh token the emulator issued for a realm."""
    grants = [g for g in emu.oauth.grants.values() if g.realm_id == realm]
    access = [t for t, a in emu.oauth.access.items() if a.realm_id == realm]
    return [g.refresh_token for g in grants] + access


async def fetch_row(url: str, realm: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT c.*, c::text AS row_text FROM qbsync.connections c WHERE realm_id = $1",
            realm)
        logs = await conn.fetchval(
            "SELECT string_agg(l::text, E'\\n') FROM qbsync.integration_logs l")
    finally:
        await conn.close()
    assert row is not None
    return {**dict(row), "logs": logs or ""}


async def test_connect_stores_encrypted_tokens_and_company(
        emu: Emulator, server: EmulatorServer, settings: Settings) -> None:
    realm = emu.create_company(COMPANY, custom_txn_numbers=True)
    announced: list[str] = []
    company = await connect(settings, target(server), open_url=headless_browser(), port=0,
                            announce=announced.append, wait_seconds=20)
    assert company.realm_id == realm
    assert company.company_name == COMPANY
    url = announced[0]
    assert url.startswith(server.base_url + "/connect/oauth2?")
    for part in (f"client_id={DEFAULT_CLIENT_ID}", "scope=com.intuit.quickbooks.accounting",
                 "redirect_uri=http%3A%2F%2Flocalhost%3A", "%2Fcallback", "state=",
                 "response_type=code"):
        assert part in url

    row = await fetch_row(settings.database_url, realm)
    assert row["status"] == "connected"
    assert row["active"] is True
    assert row["company_name"] == COMPANY
    assert row["environment"] == "emulator"
    assert row["api_base_url"] == server.base_url
    assert row["key_id"] == "k1"
    assert "CompanyName" in row["company_info"]
    tokens = issued_tokens(emu, realm)
    assert len(tokens) == 2
    blob = bytes(row["tokens"])
    for token in tokens:  # never in plain text, in any column or any log line
        assert token not in row["row_text"]
        assert token.encode() not in blob
        assert token.encode().hex() not in row["row_text"]
        assert token not in row["logs"]
    assert "connection.connect" in row["logs"]

    stored = Vault.parse(settings.token_keys.get_secret_value()).decrypt(  # type: ignore[union-attr]
        realm, blob, "k1")
    assert {stored["access_token"], stored["refresh_token"]} == set(tokens)


async def test_state_mismatch_is_refused(emu: Emulator, server: EmulatorServer,
                                         settings: Settings) -> None:
    emu.create_company(COMPANY)

    async def forged(url: str) -> None:
        async with httpx.AsyncClient() as http:
            resp = await http.get(url)  # the emulator approves and redirects
            location = httpx.URL(resp.headers["location"])
            params = dict(location.params)
            params["state"] = "forged-" + params["state"]
            answer = await http.get(location.copy_with(params=params))
            assert answer.status_code == 400

    with pytest.raises(ConnectError, match="state does not match"):
        await connect(settings, target(server), open_url=forged, port=0, wait_seconds=20)
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM qbsync.connections") == 0
    finally:
        await conn.close()


async def test_denied_authorization_is_reported(server: EmulatorServer,
                                                settings: Settings) -> None:
    async def deny(url: str) -> None:
        state = httpx.URL(url).params["state"]
        redirect = httpx.URL(httpx.URL(url).params["redirect_uri"])
        async with httpx.AsyncClient() as http:
            await http.get(redirect.copy_with(params={"error": "access_denied",
                                                      "state": state}))

    with pytest.raises(ConnectError, match="access_denied"):
        await connect(settings, target(server), open_url=deny, port=0, wait_seconds=20)


async def test_missing_settings_are_named(server: EmulatorServer, db_url: str) -> None:
    no_keys = Settings(database_url=db_url, client_id="x", client_secret="y", token_keys=None)
    with pytest.raises(ConfigError, match="token_keys"):
        await connect(no_keys, target(server), open_url=headless_browser(), port=0)
    no_secret = Settings(database_url=db_url, client_id="x", client_secret=None,
                         token_keys=generate_key("k1"))
    with pytest.raises(ConfigError, match="client_secret"):
        await connect(no_secret, target(server), open_url=headless_browser(), port=0)


async def test_disconnect_revokes_and_marks(emu: Emulator, server: EmulatorServer,
                                            settings: Settings) -> None:
    realm = emu.create_company(COMPANY)
    await connect(settings, target(server), open_url=headless_browser(), port=0)
    before = await fetch_row(settings.database_url, realm)
    vault = Vault.parse(settings.token_keys.get_secret_value())  # type: ignore[union-attr]
    old = vault.decrypt(realm, before["tokens"], before["key_id"])

    result = await disconnect(settings)
    assert result.realm_id == realm
    assert result.revoked is True

    after = await fetch_row(settings.database_url, realm)
    assert after["status"] == "disconnected"
    assert after["active"] is False
    assert after["access_expires_at"] is None
    assert after["token_generation"] == before["token_generation"] + 1
    assert vault.decrypt(realm, after["tokens"], after["key_id"]) == {}
    assert "connection.disconnect" in after["logs"]
    assert "cli:" in after["logs"]

    client = oauth.ClientCredentials(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
    async with httpx.AsyncClient() as http:
        endpoints = await oauth.discover(http, server.base_url + EMULATOR_DISCOVERY)
        with pytest.raises(oauth.InvalidGrant):
            await oauth.refresh(http, client, old["refresh_token"], endpoints=endpoints)
        resp = await http.get(f"{server.base_url}/v3/company/{realm}/companyinfo/{realm}",
                              headers={"Authorization": f"Bearer {old['access_token']}"})
        assert resp.status_code == 401

    again = await disconnect(settings, realm_id=realm)
    assert again.note == "already disconnected"


async def test_disconnect_without_a_company(settings: Settings) -> None:
    with pytest.raises(QbsyncError, match="no company is connected"):
        await disconnect(settings)


async def test_pasted_redirect_address_is_accepted(emu: Emulator, server: EmulatorServer,
                                                   settings: Settings) -> None:
    """The operator's browser cannot reach the callback port: they paste its address."""
    realm = emu.create_company(COMPANY)
    pasted: queue.Queue[str] = queue.Queue()

    async def browser_elsewhere(url: str) -> None:
        async with httpx.AsyncClient() as http:
            resp = await http.get(url)  # approved; the redirect is never followed
        pasted.put("  " + resp.headers["location"] + "\n")

    company = await connect(settings, target(server), open_url=browser_elsewhere, port=0,
                            read_pasted=pasted.get, wait_seconds=20)
    assert company.realm_id == realm


async def test_unmigrated_database_fails_before_the_browser(server: EmulatorServer,
                                                            empty_db_url: str) -> None:
    opened: list[str] = []
    bare = Settings(database_url=empty_db_url, client_id=DEFAULT_CLIENT_ID,
                    client_secret=DEFAULT_CLIENT_SECRET, token_keys=generate_key("k1"),
                    allow_local_quickbooks=True)
    with pytest.raises(QbsyncError, match="qbsync migrate"):
        await connect(bare, target(server), open_url=opened.append, port=0)
    assert opened == []
