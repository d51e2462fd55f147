"""After the invoice, end to end (in-process daemon, in-process emulator): payments close
the invoice's balance, refunds become RefundReceipts with the right VAT lines, a
cancellation voids before payment and refunds after it, each exactly once, and the shop rows
say what happened."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.daemon_support import Shop, drained, running
from tests.integration import dixis_helpers as dx

CARD, CASH, BANK_TRANSFER = "3", "1", "4"  # the emulator's PaymentMethod Ids
UNDEPOSITED, BANK = "8", "10"  # its Account Ids


def d(value: Any) -> Decimal:
    return Decimal(str(value))


def products(conn: psycopg.Connection) -> tuple[int, int, int]:
    oil = dx.product(conn, "Ελαιόλαδο Κορωνέικη 1L", "12.90", vat=13)
    wine = dx.product(conn, "Κρασί Αγιωργίτικο 750ml", "15.00", vat=24)
    rusk = dx.product(conn, "Παξιμάδια Κρίθινα", "3.20", vat=6)
    return oil, wine, rusk


def new_order(conn: psycopg.Connection, goods: tuple[int, int, int], *, status: str = "completed",
              method: str = "card") -> int:
    oil, wine, rusk = goods
    who = dx.customer(conn)
    order_id = dx.order(conn, [(oil, "2", "12.90"), (wine, "1", "15.00"), (rusk, "3", "3.20")],
                        customer_id=who, shipping="4.90", status=status)
    conn.execute("UPDATE dixis.orders SET payment_method = %s WHERE id = %s", (method, order_id))
    return order_id  # total 25.80 + 15.00 + 9.60 + 4.90 = 55.30


TOTAL = Decimal("55.30")


def entities(shop: Shop, kind: str) -> list[dict[str, Any]]:
    return shop.emu.entities(shop.realm_id, kind)


def invoice_of(shop: Shop, conn: psycopg.Connection, order_id: int) -> dict[str, Any]:
    conn.commit()
    row = conn.execute("SELECT quickbooks_invoice_id FROM dixis.orders WHERE id = %s",
                       (order_id,)).fetchone()
    assert row is not None
    assert row[0], f"order {order_id} has no invoice"
    found = shop.emu.get_entity(shop.realm_id, "Invoice", row[0])
    assert found is not None
    return found


def order_columns(conn: psycopg.Connection, order_id: int) -> dict[str, Any]:
    conn.commit()
    cur = conn.execute(
        "SELECT quickbooks_invoice_id, quickbooks_sync_status, quickbooks_sync_error,"
        " quickbooks_payment_id, quickbooks_payment_status, quickbooks_payment_error"
        " FROM dixis.orders WHERE id = %s", (order_id,))
    row = cur.fetchone()
    assert row is not None
    assert cur.description is not None
    return {c.name: v for c, v in zip(cur.description, row, strict=True)}


def refund_columns(conn: psycopg.Connection, refund_id: int) -> tuple[Any, ...]:
    conn.commit()
    row = conn.execute("SELECT quickbooks_refund_id, quickbooks_sync_status,"
                       " quickbooks_sync_error FROM dixis.refunds WHERE id = %s",
                       (refund_id,)).fetchone()
    assert row is not None
    return tuple(row)


def tax_rate_of(shop: Shop, line: dict[str, Any]) -> str:
    codes = {c["Id"]: c["Name"] for c in entities(shop, "TaxCode")}
    return codes[line["SalesItemLineDetail"]["TaxCodeRef"]["value"]]


@pytest.mark.parametrize(("method", "account", "paid_method"), [
    ("card", UNDEPOSITED, CARD),
    ("bank_transfer", BANK, BANK_TRANSFER),
    ("cod", UNDEPOSITED, CASH),
])
async def test_paid_orders_leave_no_open_balance(shop: Shop, dixis_db: psycopg.Connection,
                                                 method: str, account: str,
                                                 paid_method: str) -> None:
    goods = products(dixis_db)
    orders = [new_order(dixis_db, goods, method=method) for _ in range(3)]
    for o in orders[:2]:
        dx.pay(dixis_db, o, reference=f"ref-{o}")
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
        # the third is paid after its invoice reached QuickBooks
        dx.pay(dixis_db, orders[2], reference="later")
        dixis_db.commit()
        await drained(shop.url)
    payments = entities(shop, "Payment")
    assert len(payments) == 3
    by_invoice = {p["Line"][0]["LinkedTxn"][0]["TxnId"]: p for p in payments}
    for o in orders:
        invoice = invoice_of(shop, dixis_db, o)
        assert d(invoice["TotalAmt"]) == TOTAL
        assert d(invoice["Balance"]) == 0, invoice
        payment = by_invoice[invoice["Id"]]
        assert d(payment["TotalAmt"]) == TOTAL
        assert payment["Line"][0]["LinkedTxn"][0]["TxnType"] == "Invoice"
        assert payment["CustomerRef"]["value"] == invoice["CustomerRef"]["value"]
        assert payment["PaymentMethodRef"]["value"] == paid_method
        assert payment["DepositToAccountRef"]["value"] == account
        cols = order_columns(dixis_db, o)
        assert cols["quickbooks_sync_status"] == "synced"
        assert (cols["quickbooks_payment_id"], cols["quickbooks_payment_status"],
                cols["quickbooks_payment_error"]) == (payment["Id"], "synced", None)


async def test_partial_refund_is_one_receipt_with_vat_lines(shop: Shop,
                                                            dixis_db: psycopg.Connection) -> None:
    order_id = new_order(dixis_db, products(dixis_db))
    dx.pay(dixis_db, order_id)
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
        refund_id = dx.refund(dixis_db, order_id, "10.00", reason="Σπασμένο μπουκάλι")
        dixis_db.commit()
        await drained(shop.url)
    [receipt] = entities(shop, "RefundReceipt")
    assert d(receipt["TotalAmt"]) == Decimal("10.00")
    assert receipt["DocNumber"].endswith("-R1")
    sold = [line for line in receipt["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    # split over the invoice's VAT rates: 13 % oil, 24 % wine and shipping, 6 % rusks
    assert sorted(tax_rate_of(shop, line) for line in sold) == ["ΦΠΑ 13%", "ΦΠΑ 24%",
                                                                   "ΦΠΑ 6%"]
    assert sum(d(line["Amount"]) for line in sold) == Decimal("10.00")
    assert d(receipt["PaymentMethodRef"]["value"]) == d(CARD)
    assert refund_columns(dixis_db, refund_id) == (receipt["Id"], "synced", None)
    # the sale stays: invoice paid in full, not voided
    invoice = invoice_of(shop, dixis_db, order_id)
    assert (d(invoice["TotalAmt"]), d(invoice["Balance"])) == (TOTAL, 0)
    assert len(entities(shop, "Payment")) == 1


async def test_full_refund_repeats_the_invoice_and_keeps_it(shop: Shop,
                                                            dixis_db: psycopg.Connection) -> None:
    order_id = new_order(dixis_db, products(dixis_db))
    dx.pay(dixis_db, order_id)
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
        refund_id = dx.refund(dixis_db, order_id)
        dixis_db.execute("UPDATE dixis.orders SET status = 'refunded' WHERE id = %s",
                         (order_id,))
        dixis_db.commit()
        await drained(shop.url)
    [receipt] = entities(shop, "RefundReceipt")
    invoice = invoice_of(shop, dixis_db, order_id)
    assert d(receipt["TotalAmt"]) == TOTAL
    # the receipt repeats the invoice's lines: same items, amounts and tax codes
    def lines(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(line["SalesItemLineDetail"]["ItemRef"]["value"], d(line["Amount"]),
                 line["SalesItemLineDetail"]["TaxCodeRef"]["value"])
                for line in doc["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    assert lines(receipt) == lines(invoice)
    assert d(receipt["TxnTaxDetail"]["TotalTax"]) == d(invoice["TxnTaxDetail"]["TotalTax"])
    assert not str(invoice.get("PrivateNote") or "").startswith("Voided")
    assert d(invoice["TotalAmt"]) == TOTAL
    assert len(entities(shop, "Invoice")) == 1
    assert len(entities(shop, "Payment")) == 1
    assert refund_columns(dixis_db, refund_id) == (receipt["Id"], "synced", None)
    assert order_columns(dixis_db, order_id)["quickbooks_sync_status"] == "synced"


async def test_cancellation_before_payment_voids_the_invoice(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    order_id = new_order(dixis_db, products(dixis_db), method="bank_transfer")
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
        dixis_db.execute("UPDATE dixis.orders SET status = 'cancelled' WHERE id = %s",
                         (order_id,))
        dixis_db.commit()
        await drained(shop.url)
    [invoice] = entities(shop, "Invoice")
    assert d(invoice["TotalAmt"]) == 0
    assert d(invoice["Balance"]) == 0
    assert str(invoice.get("PrivateNote") or "").startswith("Voided")
    assert entities(shop, "Payment") == []
    assert entities(shop, "RefundReceipt") == []
    cols = order_columns(dixis_db, order_id)
    assert (cols["quickbooks_invoice_id"], cols["quickbooks_sync_status"]) == (invoice["Id"],
                                                                             "voided")


async def test_cancellation_after_payment_is_a_full_refund(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    order_id = new_order(dixis_db, products(dixis_db))
    dx.pay(dixis_db, order_id)
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
        refund_id = dx.refund(dixis_db, order_id, reason="Ακύρωση")
        dixis_db.execute("UPDATE dixis.orders SET status = 'cancelled' WHERE id = %s",
                         (order_id,))
        dixis_db.commit()
        await drained(shop.url)
        # nothing more happens when the daemon looks again
        dixis_db.execute("SELECT qbsync.resync('refund', %s)", (str(refund_id),))
        dixis_db.commit()
        await drained(shop.url)
    [invoice] = entities(shop, "Invoice")
    [receipt] = entities(shop, "RefundReceipt")
    assert not str(invoice.get("PrivateNote") or "").startswith("Voided")
    assert d(invoice["TotalAmt"]) == TOTAL
    assert d(invoice["Balance"]) == 0
    assert d(receipt["TotalAmt"]) == TOTAL
    assert len(entities(shop, "Payment")) == 1
    assert refund_columns(dixis_db, refund_id)[1] == "synced"
    assert order_columns(dixis_db, order_id)["quickbooks_payment_status"] == "synced"


async def test_a_cleared_payment_is_deleted_in_quickbooks(shop: Shop,
                                                          dixis_db: psycopg.Connection) -> None:
    order_id = new_order(dixis_db, products(dixis_db), method="bank_transfer")
    dx.pay(dixis_db, order_id, reference="RF1")
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
        assert len(entities(shop, "Payment")) == 1
        dixis_db.execute("UPDATE dixis.orders SET paid_at = NULL, amount_paid = NULL"
                         " WHERE id = %s", (order_id,))
        dixis_db.commit()
        await drained(shop.url)
    assert entities(shop, "Payment") == []
    assert d(invoice_of(shop, dixis_db, order_id)["Balance"]) == TOTAL
    cols = order_columns(dixis_db, order_id)
    assert (cols["quickbooks_payment_id"], cols["quickbooks_payment_status"]) == (None,
                                                                                 "deleted")
