"""Dixis payments and refunds, pushed after the invoice: qbsync_map.payment / refund, the order
state machine (void before payment, refund receipt after), capture rules and the generator's
payment data."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from qbsync import shop
from tests.integration.dixis_helpers import (
    clear_outbox,
    customer,
    mapped,
    money,
    order,
    outbox,
    pay,
    product,
    refund,
    refused,
)


def invoice_id(order_id: int) -> dict[str, Any]:
    return {"TxnId": {"$id": ["order", str(order_id)]}, "TxnType": "Invoice"}


def assert_lines_add_up(body: dict[str, Any], total: Decimal) -> None:
    for line in body["Line"]:
        d = line["SalesItemLineDetail"]
        assert line["Amount"] == money(Decimal(d["Qty"]) * Decimal(d["UnitPrice"])), line
    assert sum(line["Amount"] for line in body["Line"]) == total


def set_method(conn: psycopg.Connection, order_id: int, method: str) -> None:
    conn.execute("UPDATE dixis.orders SET payment_method = %s WHERE id = %s", (method, order_id))


@pytest.fixture
def oil(dixis_db: psycopg.Connection) -> int:
    return product(dixis_db, "Ελαιόλαδο Κορωνέικη 1L", "13.50", vat=13)


# -- payments ---------------------------------------------------------------------------


def test_card_payment_applies_to_the_invoice(dixis_db: psycopg.Connection, oil: int) -> None:
    c = customer(dixis_db)
    o = order(dixis_db, [(oil, "2", "13.50")], customer_id=c, shipping="4.90",
              created_at="2026-03-14 23:30+02")
    pay(dixis_db, o, at="2026-03-14 23:30+02", reference="ch_3PqRsT2eZvKYlo2C1a2b3c4d")
    body = mapped(dixis_db, "payment", o)
    number = f"DX-2026-{o:06d}"
    assert body == {
        "CustomerRef": {"$ref": ["customer", str(c)]},
        "TotalAmt": Decimal("31.90"),
        "TxnDate": "2026-03-14",
        "Line": [{"Amount": Decimal("31.90"), "LinkedTxn": [invoice_id(o)]}],
        # the card id is 27 characters, QuickBooks keeps 21: the order number instead
        "PaymentRefNum": number,
        "PaymentMethodRef": {"$setting": "payment_method:card"},
        "DepositToAccountRef": {"$setting": "deposit_account:card"},
        "PrivateNote": f"Dixis order {number} (id {o}), card payment, "
                       "reference ch_3PqRsT2eZvKYlo2C1a2b3c4d",
    }


def test_bank_transfer_after_midnight_uses_the_athens_date(dixis_db: psycopg.Connection,
                                                           oil: int) -> None:
    o = order(dixis_db, [(oil, "1", "13.50")], customer_id=customer(dixis_db), shipping="4.90")
    set_method(dixis_db, o, "bank_transfer")
    pay(dixis_db, o, at="2026-03-17 22:30+00", reference="RF18000000000123456")
    body = mapped(dixis_db, "payment", o)
    assert body is not None
    assert body["TxnDate"] == "2026-03-18"  # 00:30 in Athens
    assert body["PaymentRefNum"] == "RF18000000000123456"
    assert body["PaymentMethodRef"] == {"$setting": "payment_method:bank_transfer"}
    assert body["DepositToAccountRef"] == {"$setting": "deposit_account:bank_transfer"}
    assert body["TotalAmt"] == Decimal("18.40")


def test_cash_on_delivery_and_a_guest(dixis_db: psycopg.Connection, oil: int) -> None:
    guest = {"billing_first_name": "Νίκος", "billing_last_name": "Οικονόμου",
             "billing_email": "Nikos.O@Example.gr"}
    o = order(dixis_db, [(oil, "1", "13.50")], guest=guest, shipping="4.90",
              payment_fee="2.00")
    pay(dixis_db, o, at="2026-03-16 12:00+02", reference="ACS-0012345678")
    body = mapped(dixis_db, "payment", o)
    assert body is not None
    # the same customer as the invoice: the guest filed under the order's e-mail
    assert body["CustomerRef"] == {"$ref": ["customer", "guest:nikos.o@example.gr"]}
    invoice = mapped(dixis_db, "order", o)
    assert invoice is not None
    assert invoice["CustomerRef"] == body["CustomerRef"]
    assert body["PaymentMethodRef"] == {"$setting": "payment_method:cod"}
    assert body["DepositToAccountRef"] == {"$setting": "deposit_account:cod"}
    assert body["TotalAmt"] == invoice_total(invoice) == Decimal("20.40")


def invoice_total(invoice: dict[str, Any]) -> Decimal:
    return sum((line["Amount"] for line in invoice["Line"]), Decimal(0))


def test_unpaid_or_undelivered_orders_push_no_payment(dixis_db: psycopg.Connection,
                                                      oil: int) -> None:
    c = customer(dixis_db)
    unpaid = order(dixis_db, [(oil, "1", "13.50")], customer_id=c)
    assert mapped(dixis_db, "payment", unpaid) is None
    # card captured at checkout, not delivered yet: no invoice to apply it to
    checkout = order(dixis_db, [(oil, "1", "13.50")], customer_id=c, status="paid")
    pay(dixis_db, checkout)
    assert mapped(dixis_db, "payment", checkout) is None
    assert mapped(dixis_db, "payment", 987654) is None
    # a pushed payment that is cleared again is deleted in QuickBooks
    done = order(dixis_db, [(oil, "1", "13.50")], customer_id=c)
    dixis_db.execute("UPDATE dixis.orders SET quickbooks_payment_id = '301' WHERE id = %s",
                     (done,))
    assert mapped(dixis_db, "payment", done) == {"$op": "delete"}


def test_bad_payments_are_refused(dixis_db: psycopg.Connection, oil: int) -> None:
    dixis_db.execute("ALTER TABLE dixis.orders DROP CONSTRAINT orders_payment_check")
    o = order(dixis_db, [(oil, "1", "13.50")], customer_id=customer(dixis_db))
    label = f"payment {o} (order DX-2026-{o:06d})"
    pay(dixis_db, o, amount="20.00")
    assert refused(dixis_db, "payment", o) == (
        f"{label}: amount paid 20.00 exceeds the order total 13.50")
    pay(dixis_db, o, amount="0")
    assert refused(dixis_db, "payment", o) == f"{label}: amount paid 0.00 is not positive"
    pay(dixis_db, o, amount="NaN")
    assert refused(dixis_db, "payment", o) == f"{label}: the amount paid is NaN"
    dixis_db.execute("UPDATE dixis.orders SET paid_at = NULL, amount_paid = 13.50 "
                     "WHERE id = %s", (o,))
    assert "no payment date" in refused(dixis_db, "payment", o)
    assert refused(dixis_db, "payment", "DX-1") == "payment DX-1: the key is not an order id"


def test_payment_keys_and_outcome(dixis_db: psycopg.Connection, oil: int) -> None:
    c = customer(dixis_db)
    paid = order(dixis_db, [(oil, "1", "13.50")], customer_id=c)
    order(dixis_db, [(oil, "1", "13.50")], customer_id=c)
    pay(dixis_db, paid)
    assert [r[0] for r in dixis_db.execute("SELECT qbsync_map.payment_keys()")] == [str(paid)]
    dixis_db.execute("SELECT qbsync_map.payment_outcome(%s, %s)",
                     (str(paid), '{"status": "failed", "error": "QuickBooks 6000"}'))
    dixis_db.execute("SELECT qbsync_map.payment_outcome(%s, %s)",
                     (str(paid), '{"status": "synced", "qbo_id": "301"}'))
    assert dixis_db.execute(
        "SELECT quickbooks_payment_id, quickbooks_payment_status, quickbooks_payment_error, "
        "quickbooks_invoice_id FROM dixis.orders WHERE id = %s", (paid,)
    ).fetchone() == ("301", "synced", None, None)  # the invoice's columns are untouched
    dixis_db.execute("SELECT qbsync_map.payment_outcome(%s, %s)",
                     (str(paid), '{"status": "deleted", "qbo_id": "301"}'))
    assert dixis_db.execute(
        "SELECT quickbooks_payment_id, quickbooks_payment_status FROM dixis.orders "
        "WHERE id = %s", (paid,)).fetchone() == (None, "deleted")


# -- refunds ----------------------------------------------------------------------------


def three_rate_order(conn: psycopg.Connection, **extra: Any) -> int:
    honey = product(conn, "Μέλι Θυμαρίσιο 450g", "11.50", vat=13)
    wine = product(conn, "Ασύρτικο 750ml", "18.90", vat=24)
    book = product(conn, "Βιβλίο Μαγειρικής", "19.90", vat=6)
    # items 11.50 @13, 37.80 @24, 19.90 @6; a 10 % coupon; shipping free from 60 €
    o = order(conn, [(honey, "1", "11.50"), (wine, "2", "18.90"), (book, "1", "19.90")],
              customer_id=customer(conn), discount="6.92", coupon="DIXIS10", **extra)
    pay(conn, o)
    return o


def test_full_refund_repeats_the_invoice_lines(dixis_db: psycopg.Connection) -> None:
    o = three_rate_order(dixis_db)
    r = refund(dixis_db, o, reason="Επιστροφή όλης της παραγγελίας")
    dixis_db.execute("UPDATE dixis.orders SET status = 'refunded' WHERE id = %s", (o,))
    body = mapped(dixis_db, "refund", r)
    invoice = mapped(dixis_db, "order", o)  # a refunded order keeps its invoice
    assert body is not None
    assert invoice is not None
    assert "$op" not in invoice
    assert body["Line"] == invoice["Line"]
    assert_lines_add_up(body, Decimal("62.28"))
    assert body["DocNumber"] == f"DX-2026-{o:06d}-R1"
    assert body["TxnDate"] == "2026-03-20"
    assert body["GlobalTaxCalculation"] == "TaxInclusive"
    assert body["CustomerRef"] == invoice["CustomerRef"]
    assert body["PaymentMethodRef"] == {"$setting": "payment_method:card"}
    assert body["DepositToAccountRef"] == {"$setting": "deposit_account:card"}
    assert body["PrivateNote"] == (f"Refund of order DX-2026-{o:06d}: "
                                   "Επιστροφή όλης της παραγγελίας (reference re_1)")
    # the payment stays as it was
    assert mapped(dixis_db, "payment", o) is not None


def test_partial_refund_is_split_over_the_vat_rates(dixis_db: psycopg.Connection) -> None:
    o = three_rate_order(dixis_db)
    r = refund(dixis_db, o, "10.00", method="bank_transfer", reference="ΕΜΒ-0042")
    body = mapped(dixis_db, "refund", r)
    assert body is not None
    # per rate the invoice charged 11.50-1.15=10.35 @13, 37.80-3.78=34.02 @24,
    # 19.90-1.99=17.91 @6 of 62.28 -> 1.6618 / 5.4624 / 2.8757 -> 1.66 + 5.46 + 2.88
    assert [(line["SalesItemLineDetail"]["TaxCodeRef"]["$setting"], line["Amount"])
            for line in body["Line"]] == [("tax_code:24", Decimal("5.46")),
                                          ("tax_code:13", Decimal("1.66")),
                                          ("tax_code:6", Decimal("2.88"))]
    assert {line["SalesItemLineDetail"]["ItemRef"]["$ref"][1] for line in body["Line"]} == {
        "fee:refund"}
    assert body["Line"][0]["Description"] == "Επιστροφή χρημάτων (ΦΠΑ 24%)"
    assert_lines_add_up(body, Decimal("10.00"))
    assert body["PaymentRefNum"] == "ΕΜΒ-0042"
    assert body["DepositToAccountRef"] == {"$setting": "deposit_account:bank_transfer"}
    fee = mapped(dixis_db, "product", "fee:refund")
    assert fee is not None
    assert fee["Name"] == "Επιστροφή χρημάτων"
    assert fee["Type"] == "Service"
    # the order stays completed and invoiced
    assert mapped(dixis_db, "order", o) is not None


@pytest.mark.parametrize("amount", ["0.01", "0.02", "3.33", "61.27", "62.27"])
def test_partial_refunds_always_add_up(dixis_db: psycopg.Connection, amount: str) -> None:
    o = three_rate_order(dixis_db, shipping="4.90", payment_fee="2.00")
    body = mapped(dixis_db, "refund", refund(dixis_db, o, amount, method="cash"))
    assert body is not None
    assert_lines_add_up(body, Decimal(amount))
    assert all(line["Amount"] > 0 for line in body["Line"])
    assert body["PaymentMethodRef"] == {"$setting": "payment_method:cash"}


def test_refund_numbers_and_docnumber_fit_21(dixis_db: psycopg.Connection, oil: int) -> None:
    o = order(dixis_db, [(oil, "4", "13.50")], customer_id=customer(dixis_db))
    pay(dixis_db, o)
    first, second = refund(dixis_db, o, "5.00"), refund(dixis_db, o, "6.00")
    assert mapped(dixis_db, "refund", second)["DocNumber"] == (  # type: ignore[index]
        f"DX-2026-{o:06d}-R2")
    dixis_db.execute("DELETE FROM dixis.refunds WHERE id = %s", (first,))
    # numbers are never reassigned: the receipt keeps its DocNumber
    assert mapped(dixis_db, "refund", second)["DocNumber"].endswith("-R2")  # type: ignore[index]
    assert mapped(dixis_db, "refund", first) == {"$op": "void"}  # deleted: void its receipt
    # the largest order id: the year is dropped to stay within QuickBooks' 21 characters
    big = 9999999999999
    dixis_db.execute("SELECT setval(pg_get_serial_sequence('dixis.orders', 'id'), %s)",
                     (big - 1,))
    o = order(dixis_db, [(oil, "4", "13.50")], customer_id=customer(dixis_db))
    assert o == big
    pay(dixis_db, o)
    doc = mapped(dixis_db, "refund", refund(dixis_db, o, "1.00"))["DocNumber"]  # type: ignore[index]
    assert doc == f"DX-{big}-R1"
    assert len(doc) <= 21


def test_refunds_never_exceed_the_payment(dixis_db: psycopg.Connection, oil: int) -> None:
    o = order(dixis_db, [(oil, "1", "13.50")], customer_id=customer(dixis_db))
    with pytest.raises(psycopg.errors.CheckViolation, match="not paid"), \
            dixis_db.transaction():
        refund(dixis_db, o, "1.00")
    pay(dixis_db, o)
    refund(dixis_db, o, "10.00")
    with pytest.raises(psycopg.errors.CheckViolation, match=r"exceeds the 13\.50 paid"), \
            dixis_db.transaction():
        refund(dixis_db, o, "3.51")
    refund(dixis_db, o, "3.50")
    with pytest.raises(psycopg.errors.CheckViolation, match="already refunded"), \
            dixis_db.transaction():
        dixis_db.execute("UPDATE dixis.orders SET paid_at = NULL, amount_paid = NULL "
                         "WHERE id = %s", (o,))


def test_bad_refunds_are_refused(dixis_db: psycopg.Connection, oil: int) -> None:
    o = order(dixis_db, [(oil, "1", "13.50")], customer_id=customer(dixis_db))
    pay(dixis_db, o)
    r = refund(dixis_db, o, "5.00")
    label = f"refund {r} (order DX-2026-{o:06d})"
    # play a shop without these checks: the mapping must not rely on them
    dixis_db.execute("ALTER TABLE dixis.refunds DROP CONSTRAINT refunds_amount_check")
    dixis_db.execute("ALTER TABLE dixis.refunds DISABLE TRIGGER refunds_check")
    dixis_db.execute("UPDATE dixis.refunds SET amount = 'NaN' WHERE id = %s", (r,))
    assert refused(dixis_db, "refund", r) == f"{label}: the amount is NaN"
    dixis_db.execute("UPDATE dixis.refunds SET amount = 5 WHERE id = %s", (r,))
    # the order itself cannot be invoiced: the refund says so, naming both
    dixis_db.execute("DELETE FROM dixis.products WHERE id = %s", (oil,))
    message = refused(dixis_db, "refund", r)
    assert message.startswith(f"{label}: order {o} (DX-2026-{o:06d}): line 1")
    assert refused(dixis_db, "refund", "x") == "refund x: the key is not a refund id"


# -- the state machine: void before payment, refund receipt after -----------------------


def test_cancelled_before_payment_voids(dixis_db: psycopg.Connection, oil: int) -> None:
    o = order(dixis_db, [(oil, "1", "13.50")], customer_id=customer(dixis_db))
    dixis_db.execute("UPDATE dixis.orders SET status = 'cancelled' WHERE id = %s", (o,))
    assert mapped(dixis_db, "order", o) == {"$op": "void", "DocNumber": f"DX-2026-{o:06d}"}
    assert mapped(dixis_db, "payment", o) is None


def test_cancelled_after_payment_keeps_invoice_and_refunds(dixis_db: psycopg.Connection,
                                                           oil: int) -> None:
    o = order(dixis_db, [(oil, "1", "13.50")], customer_id=customer(dixis_db), shipping="4.90")
    pay(dixis_db, o)
    invoice = mapped(dixis_db, "order", o)
    payment = mapped(dixis_db, "payment", o)
    r = refund(dixis_db, o, reason="Ακύρωση")
    dixis_db.execute("UPDATE dixis.orders SET status = 'cancelled' WHERE id = %s", (o,))
    assert mapped(dixis_db, "order", o) == invoice  # stays, unchanged
    assert mapped(dixis_db, "payment", o) == payment
    body = mapped(dixis_db, "refund", r)
    assert body is not None
    assert_lines_add_up(body, Decimal("18.40"))


def test_cancelled_before_delivery_leaves_no_trace(dixis_db: psycopg.Connection,
                                                   oil: int) -> None:
    o = order(dixis_db, [(oil, "1", "13.50")], customer_id=customer(dixis_db), status="paid")
    pay(dixis_db, o)  # card captured at checkout
    r = refund(dixis_db, o)
    dixis_db.execute("UPDATE dixis.orders SET status = 'cancelled' WHERE id = %s", (o,))
    assert mapped(dixis_db, "payment", o) is None
    assert mapped(dixis_db, "refund", r) is None
    assert mapped(dixis_db, "order", o) == {"$op": "void", "DocNumber": f"DX-2026-{o:06d}"}


# -- capture ----------------------------------------------------------------------------


def test_paying_a_delivered_order_enqueues_its_payment_only(dixis_db: psycopg.Connection,
                                                            oil: int) -> None:
    o = order(dixis_db, [(oil, "1", "13.50")], customer_id=customer(dixis_db))
    clear_outbox(dixis_db)
    pay(dixis_db, o)
    assert outbox(dixis_db) == [("payment", str(o))]
    clear_outbox(dixis_db)
    dixis_db.execute("UPDATE dixis.orders SET billing_city = 'Πάτρα', updated_at = now() "
                     "WHERE id = %s", (o,))
    assert outbox(dixis_db) == [("order", str(o))]  # a billing edit: the invoice only
    clear_outbox(dixis_db)
    dixis_db.execute("SELECT qbsync_map.payment_outcome(%s, '{\"status\": \"synced\"}')",
                     (str(o),))
    assert outbox(dixis_db) == []  # write-back columns do not count
    dixis_db.execute("UPDATE dixis.orders SET paid_at = NULL, amount_paid = NULL "
                     "WHERE id = %s", (o,))
    assert outbox(dixis_db) == [("payment", str(o))]  # cleared: delete it in QuickBooks


def test_card_paid_at_checkout_goes_with_the_invoice(dixis_db: psycopg.Connection,
                                                     oil: int) -> None:
    o = order(dixis_db, [(oil, "1", "13.50")], customer_id=customer(dixis_db),
              status="pending")
    dixis_db.execute("UPDATE dixis.orders SET status = 'paid' WHERE id = %s", (o,))
    pay(dixis_db, o)
    assert outbox(dixis_db) == []  # nothing to apply it to yet: it waits in the shop
    dixis_db.execute("UPDATE dixis.orders SET status = 'completed', completed_at = now() "
                     "WHERE id = %s", (o,))
    assert outbox(dixis_db) == [("order", str(o)), ("payment", str(o))]


def test_refund_insert_enqueues_the_refund_only(dixis_db: psycopg.Connection,
                                                oil: int) -> None:
    o = order(dixis_db, [(oil, "1", "13.50")], customer_id=customer(dixis_db))
    pay(dixis_db, o)
    clear_outbox(dixis_db)
    r = refund(dixis_db, o, "2.00")
    assert outbox(dixis_db) == [("refund", str(r))]
    clear_outbox(dixis_db)
    dixis_db.execute("SELECT qbsync_map.refund_outcome(%s, '{\"status\": \"synced\", "
                     "\"qbo_id\": \"77\"}')", (str(r),))
    assert outbox(dixis_db) == []
    assert dixis_db.execute("SELECT quickbooks_refund_id, quickbooks_sync_status FROM "
                            "dixis.refunds WHERE id = %s", (r,)).fetchone() == ("77", "synced")
    dixis_db.execute("UPDATE dixis.refunds SET amount = 3.00 WHERE id = %s", (r,))
    assert outbox(dixis_db) == [("refund", str(r))]


def test_refund_before_delivery_is_pushed_on_delivery(dixis_db: psycopg.Connection,
                                                      oil: int) -> None:
    o = order(dixis_db, [(oil, "2", "13.50")], customer_id=customer(dixis_db), status="paid")
    pay(dixis_db, o)
    r = refund(dixis_db, o, "13.50", reason="Προϊόν εκτός αποθέματος")
    assert mapped(dixis_db, "refund", r) is None
    clear_outbox(dixis_db)
    dixis_db.execute("UPDATE dixis.orders SET status = 'completed', completed_at = now() "
                     "WHERE id = %s", (o,))
    assert outbox(dixis_db) == [("order", str(o)), ("payment", str(o)), ("refund", str(r))]
    assert mapped(dixis_db, "refund", r) is not None


# -- the generator ----------------------------------------------------------------------


def test_generator_pays_refunds_and_cancels_consistently(dixis_db: psycopg.Connection
                                                         ) -> None:
    counts = shop.generate(dixis_db, 2000, seed=0.42)
    assert counts["refunds"] > 0
    stats = dixis_db.execute("""
        SELECT count(*) FILTER (WHERE status = 'completed' AND paid_at IS NOT NULL),
               count(*) FILTER (WHERE status = 'completed' AND paid_at IS NULL),
               count(*) FILTER (WHERE status = 'completed' AND paid_at IS NULL
                                AND payment_method <> 'bank_transfer'),
               count(*) FILTER (WHERE payment_method = 'card' AND paid_at <> created_at),
               count(*) FILTER (WHERE payment_method = 'cod' AND paid_at <> completed_at),
               count(*) FILTER (WHERE payment_method = 'bank_transfer'
                                AND paid_at <> created_at + interval '1 day'),
               count(*) FILTER (WHERE paid_at IS NOT NULL AND amount_paid <> total),
               count(*) FILTER (WHERE status = 'cancelled' AND paid_at IS NULL),
               count(*) FILTER (WHERE status = 'cancelled' AND paid_at IS NOT NULL),
               count(*) FILTER (WHERE status = 'cancelled' AND paid_at IS NULL
                                AND completed_at IS NOT NULL),
               count(*) FILTER (WHERE status = 'refunded')
        FROM dixis.orders""").fetchone()
    assert stats is not None
    (paid, unpaid, unpaid_not_transfer, card_late, cod_early, transfer_off, partial_pay,
     cancelled_unpaid, cancelled_paid, voided, refunded) = stats
    assert paid > 1500
    assert 0 < unpaid < 100  # a few bank transfers still owed after delivery
    assert unpaid_not_transfer == card_late == cod_early == transfer_off == partial_pay == 0
    assert cancelled_unpaid > 0
    assert cancelled_paid > 0
    assert voided > 0
    assert 5 <= refunded <= 40  # ~1 %

    refunds = dixis_db.execute("""
        SELECT count(*) FILTER (WHERE r.amount < o.total AND o.status = 'completed'),
               count(*) FILTER (WHERE r.amount = o.total AND o.status IN ('refunded', 'cancelled')),
               count(*) FILTER (WHERE r.amount = o.total AND o.status = 'completed'),
               count(*) FILTER (WHERE o.paid_at IS NULL OR r.refunded_at < o.paid_at),
               count(*) FILTER (WHERE o.status IN ('refunded', 'cancelled')
                                AND r.amount < o.total)
        FROM dixis.refunds r JOIN dixis.orders o ON o.id = r.order_id""").fetchone()
    assert refunds is not None
    partial, full, full_completed, before_paid, short = refunds
    assert 30 <= partial <= 110  # ~3 % of completed orders
    assert full == refunded + cancelled_paid
    assert full_completed == before_paid == short == 0
    assert dixis_db.execute("""
        SELECT count(*) FROM dixis.orders o
        WHERE (SELECT coalesce(sum(amount), 0) FROM dixis.refunds r WHERE r.order_id = o.id)
              > coalesce(o.amount_paid, 0)""").fetchone() == (0,)
    assert dixis_db.execute("""
        SELECT count(*) FROM dixis.orders o
        WHERE status IN ('refunded', 'cancelled') AND paid_at IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM dixis.refunds r WHERE r.order_id = o.id)
    """).fetchone() == (0,)


def test_generated_payments_and_refunds_all_map(dixis_db: psycopg.Connection) -> None:
    for table, entity in (("dixis.orders", "order"), ("dixis.order_items", "order"),
                          ("dixis.orders", "payment"), ("dixis.refunds", "refund")):
        dixis_db.execute("SELECT qbsync.untrack(%s, %s)", (table, entity))
    shop.generate(dixis_db, 1500, seed=-0.3)
    rows = dixis_db.execute("""
        SELECT r.id, r.amount, qbsync_map.refund(r.id::text)::text
        FROM dixis.refunds r""").fetchall()
    pushed = 0
    for refund_id, amount, text in rows:
        if text is None:
            continue  # refunded before delivery
        body = json.loads(text, parse_float=Decimal)
        assert_lines_add_up(body, amount)
        assert len(body["DocNumber"]) <= 21, refund_id
        pushed += 1
    assert pushed > 20
    payments = dixis_db.execute("""
        SELECT o.amount_paid, m.body FROM dixis.orders o,
        LATERAL (SELECT qbsync_map.payment(o.id::text)::text AS body) m
        WHERE m.body IS NOT NULL""").fetchall()
    assert len(payments) > 1000
    for amount, text in payments:
        body = json.loads(text, parse_float=Decimal)
        assert body["TotalAmt"] == body["Line"][0]["Amount"] == amount
        assert len(body["PaymentRefNum"]) <= 21


def test_generator_is_deterministic_with_payments(dixis_db: psycopg.Connection) -> None:
    fingerprint = """
        SELECT md5(string_agg(concat_ws(',', id, status, paid_at, amount_paid,
                                        payment_reference, completed_at), '|' ORDER BY id)),
               (SELECT md5(string_agg(concat_ws(',', r.id, r.order_id, r.number, r.amount,
                                                r.reason, r.refunded_at, r.method, r.reference),
                                      '|' ORDER BY r.id)) FROM dixis.refunds r)
        FROM dixis.orders"""
    reset = ("TRUNCATE dixis.refunds, dixis.order_items, dixis.orders, dixis.customers, "
             "dixis.products, dixis.producers, dixis.categories RESTART IDENTITY")
    runs = []
    for seed in (0.7, 0.7, 0.1):
        dixis_db.execute(reset)
        shop.generate(dixis_db, 800, seed=seed)
        runs.append(dixis_db.execute(fingerprint).fetchone())
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
