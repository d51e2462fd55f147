"""Real QuickBooks answers (tests/fixtures/qbo, sources in SOURCES.md) through the parts of
the daemon that live in PostgreSQL: the digest drift detection compares, the report totals,
and drift detection itself."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from qbsync import db as qdb
from qbsync import drift
from qbsync.digest import digest
from tests.daemon_support import Shop, drained, running
from tests.integration.test_drift import invoice_id, invoiced, open_drift, poll
from tests.qbo_shapes import load
from tests.support import conn_url

REALM = "9341452266648113"


@pytest.mark.parametrize(("qbo_type", "fixture"), [
    ("Invoice", "invoice_create.json"), ("Invoice", "invoice_read.json"),
    ("Invoice", "invoice_void.json"), ("Payment", "payment_read.json"),
    ("Payment", "payment_void.json"), ("RefundReceipt", "refundreceipt_create.json"),
    ("Customer", "customer_create.json"), ("Item", "item_create.json"),
])
def test_digest_of_real_objects_is_what_sql_computes(db: psycopg.Connection, qbo_type: str,
                                                     fixture: str) -> None:
    obj = load(fixture)[qbo_type]
    ours = digest(qbo_type, obj)
    assert ours is not None
    row = db.execute("SELECT %s::jsonb = qbsync.qbo_digest(%s, %s::jsonb)",
                     (json.dumps(ours), qbo_type, json.dumps(obj))).fetchone()
    assert row is not None
    assert row[0]


def test_report_totals_of_a_real_profit_and_loss(db: psycopg.Connection) -> None:
    """Intuit's sample: nested income sections, and an Expenses total of "" (no data)."""
    report = json.dumps(load("report_profitandloss.json"))
    totals = db.execute(
        "SELECT qbsync.report_total(%s::jsonb, 'Income'), qbsync.report_total(%s::jsonb, "
        "'NetIncome'), qbsync.report_total(%s::jsonb, 'Expenses')",
        (report, report, report)).fetchone()
    assert totals == (Decimal("325.00"), Decimal("325.00"), Decimal(0))


class Changes:
    """A QuickBooks whose CDC answers with the given objects."""

    def __init__(self, **objects: list[dict[str, Any]]) -> None:
        self.objects = objects

    async def cdc(self, entities: Any, changed_since: Any) -> dict[str, list[dict[str, Any]]]:
        return self.objects


async def test_a_void_made_in_quickbooks_is_seen_as_a_void(db: psycopg.Connection) -> None:
    """Real voided invoices carry no Voided field (Intuit's void sample): zero amounts and
    "Voided" in PrivateNote are all that shows it. Drift must still call it a void (which
    only an accept can resolve), not an edit a push could undo."""
    voided = load("invoice_void.json")["Invoice"]
    before = {**voided, "SyncToken": "0", "PrivateNote": "qbsync:order:7;", "TotalAmt": 150.0,
              "Line": [{**line, "Amount": 50.0} for line in voided["Line"]]}
    db.execute("INSERT INTO qbsync.connections (realm_id, api_base_url, company_name, tokens,"
               " key_id) VALUES (%s, 'http://qbo.emulator', 'Sample', '\\xdeadbeef', 'k1')",
               (REALM,))
    db.execute("SELECT qbsync.define_entity('order', 'Invoice', 3, '{60,300,900}', 120)")
    db.execute("SELECT qbsync.record_success(%s, 'order', '7', %s::jsonb)", (REALM, json.dumps({
        "qbo_type": "Invoice", "qbo_id": voided["Id"], "sync_token": "0",
        "doc_number": voided["DocNumber"], "operation": "create", "qbo_status": "active",
        "digest": digest("Invoice", before)})))
    db.commit()
    pool = await qdb.create_pool(conn_url(db), size=2)
    try:
        found = await drift.poll(pool, Changes(Invoice=[voided]), REALM,  # type: ignore[arg-type]
                                 now=datetime.fromisoformat("2016-03-16T12:30:00-07:00"))
    finally:
        await pool.close()
    assert found == 1
    db.commit()
    change = db.execute("SELECT change FROM qbsync.drift_log WHERE qbo_id = %s",
                        (voided["Id"],)).fetchone()
    assert change == ("voided",)


async def test_a_harmless_edit_of_an_invoice_qbsync_voided_is_no_drift(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """qbsync's own void is recorded as the void QuickBooks shows in CDC: a later memo edit
    in QuickBooks changes nothing that matters, so no drift is raised."""
    order_id = invoiced(shop, dixis_db)
    async with running(shop) as daemon:
        await drained(shop.url)
        dixis_db.execute("UPDATE dixis.orders SET status = 'cancelled' WHERE id = %s",
                         (order_id,))
        dixis_db.commit()
        await drained(shop.url)
        qbo_id = invoice_id(dixis_db, order_id)
        shop.emu.edit_entity(shop.realm_id, "Invoice", qbo_id,
                             {"CustomerMemo": {"value": "cancelled by the customer"}})
        assert await poll(daemon, shop) == 0
    assert open_drift(dixis_db) == []
