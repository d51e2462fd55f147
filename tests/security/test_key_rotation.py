"""Key rotation cannot stop the fleet: a daemon that still has the old key ring when `qbsync
rotate-key` runs does not meet a ciphertext it cannot read, burn a try and exit. Daemons
record the key ids they hold, rotate-key refuses while a live one lacks the new key (--force
overrides, naming it), and a daemon that cannot decrypt pauses the company with a notice,
keeps running, burns no try, and resumes once it can read the tokens again."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from pydantic import SecretStr

from qbsync import daemon
from qbsync.config import Settings
from qbsync.emulator import Emulator
from qbsync.rotate_key import RotateError, rotate
from qbsync.vault import generate_key
from tests.daemon_support import Shop, connect_quick_retry_shop, drained, eventually, running
from tests.process_support import QBSYNC
from tests.support import INVOICED, conn_url

NEW = generate_key("k2")
WORKER = "test-worker"  # tests.daemon_support's worker_name


@pytest.fixture
async def shop(dixis_db: psycopg.Connection) -> Shop:
    """Connected with the ring k1 (tests.daemon_support); retries come back at once."""
    return await connect_quick_retry_shop(conn_url(dixis_db), Emulator(limits=False))


def rings(shop: Shop) -> tuple[str, str]:
    """(the new ring, new key first; the old ring put back first)."""
    return f"{NEW},{shop.token_keys}", f"{shop.token_keys},{NEW}"


def operator(shop: Shop, ring: str) -> Settings:
    return Settings(database_url=shop.url, token_keys=ring)


async def fetch(shop: Shop, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(shop.url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def open_notice(shop: Shop) -> asyncpg.Record | None:
    rows = await fetch(shop, "SELECT message, details, key FROM qbsync.notices WHERE kind = "
                             "'tokens_unreadable' AND acknowledged_at IS NULL")
    return rows[0] if rows else None


async def no_try_was_burnt(shop: Shop) -> None:
    rows = await fetch(shop, "SELECT state, attempts FROM qbsync.outbox")
    assert [r for r in rows if r["state"] == "dead" or r["attempts"] > 0] == []
    failures = await fetch(
        shop, "SELECT status, error_message FROM qbsync.integration_logs "
              "WHERE status IN ('retry', 'dead') AND details->>'kind' IS DISTINCT FROM 'paused'")
    assert failures == []


async def all_invoiced_once(shop: Shop) -> None:
    invoiced = (await fetch(shop, f"SELECT count(*) AS n FROM dixis.orders WHERE {INVOICED}"))
    numbers = [i["DocNumber"] for i in shop.invoices()]
    assert len(numbers) == len(set(numbers)) == invoiced[0]["n"] > 0


def cli(shop: Shop, ring: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "qbsync.toml"
    config.write_text("")
    env = {"PATH": "/usr/bin:/bin", "QBSYNC_CONFIG": str(config),
           "QBSYNC_DATABASE_URL": shop.url, "QBSYNC_TOKEN_KEYS": ring}
    return subprocess.run([QBSYNC, "rotate-key", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


async def test_rotation_is_refused_while_a_live_daemon_lacks_the_new_key(
        shop: Shop, tmp_path: Path) -> None:
    new_ring, _ = rings(shop)
    async with running(shop):  # holds k1 only
        workers = await fetch(shop, "SELECT worker_id, key_ids FROM qbsync.workers")
        assert [(w["worker_id"], w["key_ids"]) for w in workers] == [(WORKER, ["k1"])]
        with pytest.raises(RotateError, match=f"1 running daemon.*{WORKER} .*keys k1.*"
                                              "nothing changed"):
            await rotate(operator(shop, new_ring), new_key_id="k2")
        assert [r["key_id"] for r in await fetch(shop, "SELECT key_id FROM qbsync.connections")
                ] == ["k1"]

        refused = await asyncio.to_thread(cli, shop, new_ring, tmp_path, "--new-key-id", "k2")
        assert refused.returncode == 1
        assert f"{WORKER} (started" in refused.stderr
        assert "do not hold key 'k2'" in refused.stderr
        assert "Traceback" not in refused.stderr

        forced = await asyncio.to_thread(cli, shop, new_ring, tmp_path, "--new-key-id", "k2",
                                         "--force")
        assert forced.returncode == 0, forced.stderr
        assert f"warning (--force): daemon {WORKER}" in forced.stderr
        assert "re-encrypted 1 of 1" in forced.stdout
        assert [r["key_id"] for r in await fetch(shop, "SELECT key_id FROM qbsync.connections")
                ] == ["k2"]


async def test_a_daemon_that_cannot_decrypt_pauses_and_resumes(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    new_ring, old_first = rings(shop)
    dixis_db.execute("SELECT dixis.generate(4)")
    dixis_db.commit()
    async with running(shop) as d:  # holds k1 only
        await drained(shop.url)
        result = await rotate(operator(shop, new_ring), new_key_id="k2", force=True)
        assert result.reencrypted == 1
        assert [f"{WORKER} (started" in daemon for daemon in result.lacking] == [True]

        # Its next token read meets the k2 ciphertext: the access token expired.
        shop.emu.expire_access_tokens(shop.realm_id)
        dixis_db.execute("SELECT dixis.generate(4)")
        dixis_db.commit()

        async def paused() -> bool:
            running_rows = await fetch(shop, "SELECT 1 FROM qbsync.outbox "
                                             "WHERE state = 'running'")
            return await open_notice(shop) is not None and not running_rows
        await eventually(paused, 30, "a tokens_unreadable notice")
        notice = await open_notice(shop)
        assert notice is not None
        assert notice["key"] == WORKER
        assert f"daemon {WORKER} cannot decrypt the tokens of QuickBooks company " \
               f"{shop.realm_id}" in notice["message"]
        assert "key 'k2'" in notice["message"]
        assert d.worker.paused_reason is not None  # paused, still running
        assert await fetch(shop, "SELECT 1 FROM qbsync.outbox WHERE state = 'pending'")
        await no_try_was_burnt(shop)
        logged = await fetch(shop, "SELECT actor FROM qbsync.integration_logs "
                                   "WHERE operation = 'token.decrypt' AND status = 'failed'")
        assert [r["actor"] for r in logged] == [WORKER]

        # The tokens under a key it holds again (rotate-key back to k1 needs no --force:
        # the daemon holds k1): it resumes by itself, and the notice closes.
        back = await rotate(operator(shop, old_first), new_key_id="k1")
        assert back.lacking == []
        await drained(shop.url)
        assert d.worker.paused_reason is None
    assert await open_notice(shop) is None
    closed = await fetch(shop, "SELECT acknowledged_by FROM qbsync.notices "
                               "WHERE kind = 'tokens_unreadable'")
    assert [r["acknowledged_by"] for r in closed] == [f"qbsync: tokens read by {WORKER}"]
    await no_try_was_burnt(shop)
    await all_invoiced_once(shop)


async def test_a_daemon_started_without_the_key_waits_until_restarted_with_it(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """It does not exit at start with the decryption error (systemd would restart it into
    the same error): it stays up, paused, with its notice, until restarted with the new ring."""
    new_ring, _ = rings(shop)
    await rotate(operator(shop, new_ring), new_key_id="k2")  # no daemon running: allowed
    dixis_db.execute("SELECT dixis.generate(4)")
    dixis_db.commit()
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(shop.settings, stop=stop, transport=shop.transport()))
    try:
        async def noticed() -> bool:
            return task.done() or await open_notice(shop) is not None
        await eventually(noticed, 30, "a tokens_unreadable notice")
        assert not task.done(), task.exception() if task.done() else None
        workers = await fetch(shop, "SELECT worker_id, key_ids FROM qbsync.workers")
        assert [(w["worker_id"], w["key_ids"]) for w in workers] == [(WORKER, ["k1"])]
        await no_try_was_burnt(shop)
    finally:
        stop.set()
        await asyncio.wait({task}, timeout=30)
    assert task.done()
    assert task.exception() is None  # a clean stop, not the decryption error

    async with running(shop, token_keys=SecretStr(new_ring)):
        await drained(shop.url)
    assert await open_notice(shop) is None
    await no_try_was_burnt(shop)
    await all_invoiced_once(shop)
