"""An in-process daemon against the in-process emulator, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from qbsync import daemon
from qbsync.config import Settings
from qbsync.connect import save_connection
from qbsync.daemon import Daemon
from qbsync.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator
from qbsync.qbo.oauth import TokenSet
from qbsync.vault import Vault, generate_key
from tests.waiting import eventually

# A loopback address (the endpoint policy accepts http only there, with
# allow_local_quickbooks); requests reach the in-process emulator through its ASGI transport,
# and one that escaped it would meet the closed discard port at once.
EMULATOR_URL = "http://127.0.0.1:9"


@dataclass
class Shop:
    """A shop database connected to an emulated QuickBooks company."""

    url: str
    emu: Emulator
    realm_id: str
    settings: Settings

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.emu.app)

    def invoices(self) -> list[dict[str, Any]]:
        return self.emu.entities(self.realm_id, "Invoice")

    @property
    def token_keys(self) -> str:
        assert self.settings.token_keys is not None
        return self.settings.token_keys.get_secret_value()

    def customers(self) -> list[dict[str, Any]]:
        return self.emu.entities(self.realm_id, "Customer")

    def items(self) -> list[dict[str, Any]]:
        return self.emu.entities(self.realm_id, "Item")


def settings_for(url: str, token_keys: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "token_keys": token_keys,
        "api_base_url": EMULATOR_URL,
        "oauth_discovery_url": f"{EMULATOR_URL}/.well-known/openid_configuration",
        "allow_local_quickbooks": True,
        "rate_limits": False,
        "poll_interval": 0.5,
        "lease_seconds": 30,
        "shutdown_grace": 5,
        "worker_name": "test-worker",
        "metrics_listen": "",  # tests that scrape ask for a port of their own
    }
    values.update(overrides)
    return Settings(**values)


async def connect_shop(url: str, emu: Emulator, *, custom_txn_numbers: bool = True,
                       api_base_url: str = EMULATOR_URL, **overrides: Any) -> Shop:
    realm_id = emu.create_company("Dixis Α.Ε.", custom_txn_numbers=custom_txn_numbers)
    keys = generate_key("k1")
    vault = Vault.parse(keys)
    tokens = TokenSet.from_response(emu.issue_tokens(realm_id))
    conn = await asyncpg.connect(url)
    try:
        await save_connection(conn, vault, realm_id, tokens, api_base_url=api_base_url,
                              company_name="Dixis Α.Ε.", environment="emulator")
    finally:
        await conn.close()
    return Shop(url, emu, realm_id, settings_for(url, keys, api_base_url=api_base_url,
                                                 **overrides))


async def connect_quick_retry_shop(url: str, emu: Emulator) -> Shop:
    """A connected shop whose retries come back at once, so that fault tests need not wait
    out real backoffs."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE qbsync.entities SET backoff_seconds = '{0,0,0}'")
    finally:
        await conn.close()
    return await connect_shop(url, emu, rate_time_scale=600)


@contextlib.asynccontextmanager
async def running(shop: Shop, **overrides: Any) -> AsyncIterator[Daemon]:
    """The daemon running as a task; stopped (drained) on exit."""
    settings = shop.settings.model_copy(update=overrides) if overrides else shop.settings
    stop = asyncio.Event()
    ready: asyncio.Future[Daemon] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(daemon.run(settings, stop=stop, transport=shop.transport(),
                                          on_ready=ready.set_result))
    done, _ = await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises what made it stop
        raise RuntimeError("daemon stopped before it was ready")
    if not done:
        raise TimeoutError("daemon not ready within 30 s")
    try:
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def drained(url: str, within: float = 60) -> None:
    """Wait until nothing is pending or running (dead rows stay)."""
    async def check() -> bool:
        conn = await asyncpg.connect(url)
        try:
            left = await conn.fetchval(
                "SELECT qbsync.backlog()")
        finally:
            await conn.close()
        return left == 0
    await eventually(check, within, "an empty queue")


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
