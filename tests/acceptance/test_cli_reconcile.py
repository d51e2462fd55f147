"""`qbsync drift` and `qbsync reconcile` through the real entry point (a subprocess), with
the daemon running in-process against the emulator."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from qbsync import drift
from qbsync.emulator import Emulator
from tests.daemon_support import Shop, connect_shop, drained, running
from tests.integration.test_after_invoice import new_order, products
from tests.integration.test_drift import cut_first_line, invoice_id
from tests.support import conn_url

QBSYNC = str(Path(sys.executable).with_name("qbsync"))


async def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        QBSYNC, *args, "--database-url", url, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def shop(dixis_db: psycopg.Connection) -> Shop:
    dixis_db.execute("UPDATE qbsync.entities SET backoff_seconds = '{0,0,0}'")
    dixis_db.commit()
    return await connect_shop(conn_url(dixis_db), Emulator(limits=False), rate_time_scale=600)


async def test_drift_list_and_resolve(shop: Shop, dixis_db: psycopg.Connection) -> None:
    order_id = new_order(dixis_db, products(dixis_db))
    dixis_db.commit()
    async with running(shop) as daemon:
        await drained(shop.url)
        assert (await cli(shop.url, "drift")).stdout.strip() == "no open drift"
        cut_first_line(shop, invoice_id(dixis_db, order_id))
        await drift.poll(daemon.pool, daemon.client, shop.realm_id)
        listed = await cli(shop.url, "drift")
        assert listed.returncode == 0, listed.stderr
        assert "TotalAmt: 55.3 → 42.4" in listed.stdout
        assert "1 open drift(s)" in listed.stdout
        drift_id = dixis_db.execute("SELECT id FROM qbsync.drift").fetchone()
        assert drift_id is not None
        usage = await cli(shop.url, "drift", "--resolve", str(drift_id[0]))
        assert usage.returncode == 2
        done = await cli(shop.url, "drift", "--resolve", str(drift_id[0]), "--push")
        assert done.returncode == 0, done.stderr
        assert f"drift {drift_id[0]} pushed" in done.stdout
        await drained(shop.url)
        again = await cli(shop.url, "drift", "--resolve", str(drift_id[0]), "--accept")
        assert again.returncode == 1
        assert "already resolved" in again.stderr


async def test_reconcile_reports_and_fixes(shop: Shop, dixis_db: psycopg.Connection) -> None:
    goods = products(dixis_db)
    orders = [new_order(dixis_db, goods) for _ in range(3)]
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
        clean = await cli(shop.url, "reconcile", "--from", "2026-03-01", "--to", "2026-03-31",
                          "--wait", "30")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "no differences" in clean.stdout
        assert "Invoice" in clean.stdout
        assert "165.90" in clean.stdout
        shop.emu.delete_entity(shop.realm_id, "Invoice", invoice_id(dixis_db, orders[0]))
        found = await cli(shop.url, "reconcile", "--from", "2026-03-01", "--to", "2026-03-31")
        assert found.returncode == 1
        assert "missing_in_quickbooks" in found.stdout
        assert "1 difference(s)" in found.stdout
        fixed = await cli(shop.url, "reconcile", "--from", "2026-03-01", "--to", "2026-03-31",
                          "--fix")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert "queued 1 fix(es)" in fixed.stdout
        await drained(shop.url)
        after = await cli(shop.url, "reconcile", "--from", "2026-03-01", "--to", "2026-03-31")
        assert after.returncode == 0
        assert "no differences" in after.stdout
