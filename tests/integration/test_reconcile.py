"""Reconciliation (migration 0006): the daemon reads QuickBooks' invoices and payments of a
period, qbsync.finish_reconcile compares them with the shop's ledger, qbsync.reconcile_fix
queues what is missing or different."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from qbsync.emulator import Emulator
from tests.daemon_support import Shop, connect_shop, drained, eventually, running
from tests.integration import dixis_helpers as dx
from tests.integration.test_after_invoice import TOTAL, new_order, products
from tests.integration.test_drift import cut_first_line, invoice_id
from tests.support import conn_url

MARCH = ("2026-03-01", "2026-03-31")


@pytest.fixture
async def shop(dixis_db: psycopg.Connection, emu: Emulator) -> Shop:
    dixis_db.execute("UPDATE qbsync.entities SET backoff_seconds = '{0,0,0}'")
    dixis_db.commit()
    return await connect_shop(conn_url(dixis_db), emu, rate_time_scale=600)


async def reconcile(conn: psycopg.Connection, period: tuple[str, str] = MARCH) -> int:
    row = conn.execute("SELECT qbsync.request_reconcile(%s, %s)", period).fetchone()
    conn.commit()
    assert row is not None
    request_id = row[0]

    async def answered() -> bool:
        conn.commit()
        state = conn.execute("SELECT state FROM qbsync.admin_requests WHERE id = %s",
                             (request_id,)).fetchone()
        return state is not None and state[0] in ("done", "failed")
    await eventually(answered, 30, "the reconciliation")
    state, result, error = conn.execute(
        "SELECT state, result, error FROM qbsync.admin_requests WHERE id = %s",
        (request_id,)).fetchone() or (None, None, None)
    assert state == "done", error
    return int(result["run_id"])


def results(conn: psycopg.Connection, run_id: int, *, problems_only: bool = False
            ) -> list[dict[str, Any]]:
    conn.commit()
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM qbsync.reconcile(%s)"
                           + (" WHERE status <> 'ok'" if problems_only else ""),
                           (run_id,)).fetchall()


def totals(conn: psycopg.Connection, run_id: int) -> dict[str, dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return {r["qbo_type"]: r for r in cur.execute(
            "SELECT * FROM qbsync.reconcile_totals WHERE run_id = %s", (run_id,)).fetchall()}


async def test_reconciliation_finds_the_planted_differences_and_fixes_them(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    goods = products(dixis_db)
    orders = [new_order(dixis_db, goods) for _ in range(5)]
    for o in orders[:4]:
        dx.pay(dixis_db, o)
    refund_id = dx.refund(dixis_db, orders[0], "5.00")
    # outside the period: not counted on either side
    late = new_order(dixis_db, goods)
    dixis_db.execute("UPDATE dixis.orders SET created_at = '2026-04-10 10:00+03',"
                     " completed_at = '2026-04-12 10:00+03' WHERE id = %s", (late,))
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
        run = await reconcile(dixis_db)
        assert results(dixis_db, run, problems_only=True) == []
        t = totals(dixis_db, run)
        assert (t["Invoice"]["shop_count"], t["Invoice"]["qbo_count"]) == (5, 5)
        assert t["Invoice"]["shop_total"] == t["Invoice"]["qbo_total"] == 5 * TOTAL
        assert (t["Payment"]["shop_count"], t["Payment"]["qbo_count"]) == (4, 4)
        assert (t["RefundReceipt"]["shop_count"], t["RefundReceipt"]["ok"]) == (1, 1)

        # behind qbsync's back: one invoice deleted, one edited, one entity_map row lost
        deleted, edited, unmapped = orders[1], orders[4], orders[3]  # orders[4] is unpaid
        gone = invoice_id(dixis_db, deleted)
        shop.emu.delete_entity(shop.realm_id, "Invoice", gone)
        cut_first_line(shop, invoice_id(dixis_db, edited))
        dixis_db.execute("DELETE FROM qbsync.entity_map WHERE entity = 'order' AND key = %s",
                         (str(unmapped),))
        dixis_db.commit()

        run = await reconcile(dixis_db)
        problems = {(p["entity"], p["key"]): p
                    for p in results(dixis_db, run, problems_only=True)}
        assert set(problems) == {("order", str(deleted)), ("order", str(edited))}
        missing = problems[("order", str(deleted))]
        assert (missing["status"], missing["qbo_id"], missing["qbo_deleted"],
                missing["shop_amount"], missing["qbo_amount"]) == (
            "missing_in_quickbooks", gone, True, TOTAL, None)
        assert "deleted in QuickBooks" in missing["note"]
        differs = problems[("order", str(edited))]
        assert (differs["status"], differs["shop_amount"], differs["qbo_amount"]) == (
            "amount_differs", TOTAL, TOTAL - Decimal("12.90"))  # one bottle of oil less
        ok = {(r["entity"], r["key"]): r for r in results(dixis_db, run)}
        assert "matched by DocNumber" in ok[("order", str(unmapped))]["note"]
        assert ok[("refund", str(refund_id))]["status"] == "ok"
        notice = dixis_db.execute("SELECT kind FROM qbsync.open_notices"
                                  " WHERE kind = 'reconcile_difference'").fetchall()
        assert notice == [("reconcile_difference",)]

        fixed = dixis_db.execute("SELECT qbsync.reconcile_fix(%s)", (run,)).fetchone()
        dixis_db.commit()
        assert fixed == (2,)
        await drained(shop.url)
        run = await reconcile(dixis_db)
        assert results(dixis_db, run, problems_only=True) == []
    invoices = [i for i in shop.invoices()
                if not str(i.get("PrivateNote") or "").startswith("Voided")]
    assert len(invoices) == 6
    assert sorted(i["DocNumber"] for i in invoices) == sorted(
        {i["DocNumber"] for i in invoices})  # no number twice
    logged = dixis_db.execute("SELECT count(*) FROM qbsync.integration_logs"
                              " WHERE operation = 'reconcile.fix'").fetchone()
    assert logged == (2,)


async def test_an_invoice_only_quickbooks_has_is_missing_in_the_shop(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    order_id = new_order(dixis_db, products(dixis_db))
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
        mine = shop.emu.get_entity(shop.realm_id, "Invoice", invoice_id(dixis_db, order_id))
        assert mine is not None
        theirs = shop.emu.create_entity(shop.realm_id, "Invoice", {
            "CustomerRef": mine["CustomerRef"], "TxnDate": "2026-03-20", "DocNumber": "ACC-1",
            "Line": [line for line in mine["Line"] if line["DetailType"] == "SalesItemLineDetail"]})
        run = await reconcile(dixis_db)
    [problem] = results(dixis_db, run, problems_only=True)
    assert (problem["status"], problem["qbo_id"], problem["doc_number"], problem["key"]) == (
        "missing_in_shop", theirs["Id"], "ACC-1", None)
    assert "not created by qbsync" in problem["note"]
    assert dixis_db.execute("SELECT qbsync.reconcile_fix(%s)", (run,)).fetchone() == (0,)


def test_reconcile_needs_a_period(dixis_db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        dixis_db.execute("SELECT qbsync.request_reconcile('2026-03-31', '2026-03-01')")
    dixis_db.rollback()
    request = dixis_db.execute("SELECT qbsync.request_reconcile('2026-03-01', '2026-03-31')"
                               ).fetchone()
    assert request is not None
    row = dixis_db.execute("SELECT kind, params->'types' FROM qbsync.admin_requests"
                           " WHERE id = %s", request).fetchone()
    assert row == ("reconcile", ["Invoice", "Payment", "RefundReceipt"])
