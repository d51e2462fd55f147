"""End to end: the Dixis shop, the daemon and the emulated QuickBooks, in one process."""

from __future__ import annotations

from decimal import Decimal

import psycopg

from qbsync.emulator import Emulator
from tests.daemon_support import connect_shop, drained, running
from tests.support import INVOICED, conn_url


async def test_completed_order_becomes_one_invoice(dixis_db: psycopg.Connection,
                                                   emu: Emulator) -> None:
    url = conn_url(dixis_db)
    shop = await connect_shop(url, emu)
    dixis_db.execute("SELECT dixis.generate(5)")
    dixis_db.commit()
    orders = dixis_db.execute(  # delivered orders have an invoice (refunded ones keep theirs)
        "SELECT id, dixis.order_number(id, created_at), total FROM dixis.orders "
        "WHERE " + INVOICED + " ORDER BY id").fetchall()
    assert orders
    async with running(shop):
        await drained(url)
    invoices = {inv["DocNumber"]: inv for inv in shop.invoices()}
    assert len(invoices) == len(orders) == len(shop.invoices())
    for order_id, number, total in orders:
        inv = invoices[number]
        assert Decimal(str(inv["TotalAmt"])) == total
        row = dixis_db.execute(
            "SELECT quickbooks_invoice_id, quickbooks_sync_status, quickbooks_sync_error "
            "FROM dixis.orders WHERE id = %s", (order_id,)).fetchone()
        assert row == (inv["Id"], "synced", None)
    logs = dixis_db.execute(
        "SELECT status, count(*) FROM qbsync.integration_logs GROUP BY 1").fetchall()
    assert dict(logs)["success"] >= len(orders)


async def test_quickbooks_failing_at_start_is_waited_out(dixis_db: psycopg.Connection,
                                                         emu: Emulator) -> None:
    """A throttle or a refused token while the daemon reads the company at
    start delays it; it does not end the process (systemd would restart it into the same
    throttle)."""
    url = conn_url(dixis_db)
    shop = await connect_shop(url, emu)
    dixis_db.execute("SELECT dixis.generate(3)")
    dixis_db.commit()
    emu.inject_fault("429", 1, entity="query")
    emu.inject_fault("401", 2, entity="query")  # the resend after the refresh too
    async with running(shop):
        await drained(url)
    assert emu.injector.rules == []
    invoiced = dixis_db.execute("SELECT count(*) FROM dixis.orders WHERE " + INVOICED
                                ).fetchone()
    assert invoiced == (len(shop.invoices()),)
