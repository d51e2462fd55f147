"""The Medusa shop end to end (in-process daemon, in-process emulator): generated Medusa orders
become exactly one invoice each, to the cent of Medusa's own total; guests, promotions, several
VAT rates, captures closing invoices, refunds as receipts; a foreign-currency order (in a euro
company, and euro orders in a dollar company) and bad rows go dead with their reasons while the
rest syncs; cancellations void, deleted captures are deleted; outcomes land in
medusa_qbsync.sync_state."""

from __future__ import annotations

import collections
from decimal import Decimal
from typing import Any

import asyncpg
import psycopg
import pytest

from qbsync import shop as shops
from qbsync.connect import save_connection
from qbsync.decide import CURRENCY
from qbsync.emulator import Emulator
from qbsync.qbo.oauth import TokenSet
from qbsync.vault import Vault, generate_key
from tests.daemon_support import (
    Shop,
    connect_quick_retry_shop,
    drained,
    running,
    settings_for,
)
from tests.integration.dixis_helpers import money
from tests.integration.medusa_helpers import INVOICED, MEDUSA_TOTAL
from tests.support import conn_url


@pytest.fixture
async def shop(medusa_db: psycopg.Connection, emu: Emulator) -> Shop:
    return await connect_quick_retry_shop(conn_url(medusa_db), emu)


def d(value: Any) -> Decimal:
    return Decimal(str(value))


def entities(shop: Shop, kind: str) -> list[dict[str, Any]]:
    return shop.emu.entities(shop.realm_id, kind)


def state(conn: psycopg.Connection, entity: str, key: str) -> tuple[Any, ...] | None:
    conn.commit()
    row = conn.execute("SELECT qbo_id, status, error FROM medusa_qbsync.sync_state "
                       "WHERE entity = %s AND key = %s", (entity, key)).fetchone()
    return None if row is None else tuple(row)


def dead(conn: psycopg.Connection) -> dict[tuple[str, str], str]:
    conn.commit()
    return {(e, k): err for e, k, err in conn.execute(
        "SELECT entity, key, last_error FROM qbsync.outbox WHERE state = 'dead'")}


def dead_codes(conn: psycopg.Connection) -> dict[tuple[str, str], str]:
    conn.commit()
    return {(e, k): code for e, k, code in conn.execute(
        "SELECT entity, key, last_error_code FROM qbsync.outbox WHERE state = 'dead'")}


# What the daemon says of a dollar order in the euro company (its payments and refunds alike)
IN_USD = "the body is in USD (CurrencyRef) but QuickBooks company {realm} keeps its books in " \
         "EUR and has multicurrency off: QuickBooks cannot book it, and nothing was sent"


async def dollar_company_shop(url: str, emu: Emulator) -> Shop:
    """The shop connected to a QuickBooks company that keeps its books in dollars (VAT codes
    as in the euro company, multicurrency off), retries at once."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE qbsync.entities SET backoff_seconds = '{0,0,0}'")
        realm_id = emu.create_company("Kyma Inc.", custom_txn_numbers=True, currency="USD")
        keys = generate_key("k1")
        await save_connection(conn, Vault.parse(keys), realm_id,
                              TokenSet.from_response(emu.issue_tokens(realm_id)),
                              api_base_url=settings_for(url, keys).api_base_url,
                              company_name="Kyma Inc.", environment="emulator")
    finally:
        await conn.close()
    return Shop(url, emu, realm_id, settings_for(url, keys, rate_time_scale=600))


async def test_generated_orders_are_one_invoice_each_to_the_cent(
    shop: Shop, medusa_db: psycopg.Connection
) -> None:
    conn = medusa_db
    shops.generate(conn, 70, seed=0.25, name="medusa")
    conn.commit()
    async with running(shop):
        await drained(shop.url, within=120)

    expected = {f"MED-{n}": (order_id, total) for order_id, n, total in conn.execute(
        f"SELECT t.id, t.display_id, t.total FROM ({MEDUSA_TOTAL}) t "
        f"WHERE t.id IN ({INVOICED})")}
    invoices = entities(shop, "Invoice")
    numbers = collections.Counter(inv["DocNumber"] for inv in invoices)
    assert [n for n, c in numbers.items() if c > 1] == []
    assert set(numbers) == set(expected)
    captured = {k for (k,) in conn.execute(
        "SELECT opc.order_id FROM medusa.order_payment_collection opc "
        "JOIN medusa.payment p ON p.payment_collection_id = opc.payment_collection_id "
        "JOIN medusa.capture c ON c.payment_id = p.id")}
    for inv in invoices:
        order_id, total = expected[inv["DocNumber"]]
        assert d(inv["TotalAmt"]) == money(total), inv["DocNumber"]
        # a captured order is paid in full (the capture is Medusa's total, unrounded)
        assert d(inv["Balance"]) == (0 if order_id in captured else d(inv["TotalAmt"]))
        assert state(conn, "order", order_id) == (inv["Id"], "synced", None)

    # guests are customers of their own; promotions are negative lines; several VAT rates
    names = [c["DisplayName"] for c in entities(shop, "Customer")]
    assert any(n.endswith(", guest)") for n in names)
    assert any(not n.endswith(", guest)") for n in names)
    lines = [line for inv in invoices for line in inv["Line"]
             if line.get("DetailType") == "SalesItemLineDetail"]
    assert any(d(line["Amount"]) < 0 for line in lines)
    codes = {c["Id"]: c["Name"] for c in entities(shop, "TaxCode")}
    assert len({codes[line["SalesItemLineDetail"]["TaxCodeRef"]["value"]] for line in lines}) >= 3
    # payments and refunds, each once
    payments = entities(shop, "Payment")
    assert len(payments) == len({p["Line"][0]["LinkedTxn"][0]["TxnId"] for p in payments})
    refunds = entities(shop, "RefundReceipt")
    refunded = conn.execute(
        "SELECT r.id, r.amount FROM medusa.refund r JOIN medusa.payment p ON p.id = r.payment_id "
        "WHERE p.currency_code = 'eur'").fetchall()
    assert sorted(d(r["TotalAmt"]) for r in refunds) == sorted(money(a) for _, a in refunded)

    # the dollar orders, and only they, are dead, each with the reason
    usd = {k for (k,) in conn.execute(
        "SELECT id FROM medusa.\"order\" o WHERE currency_code = 'usd' "
        "AND medusa_qbsync.keeps_invoice(o)")}
    assert usd
    failed = dead(conn)
    assert {k for (e, k) in failed if e == "order"} == usd
    assert set(dead_codes(conn).values()) == {CURRENCY}   # refused by the daemon, unsent
    for (entity, key), error in failed.items():
        assert IN_USD.format(realm=shop.realm_id) in error, error
        assert state(conn, entity, key) == (None, "failed", error)  # written back
    # the dashboard counts the orders still without an invoice: those
    assert conn.execute("SELECT orders_pending FROM qbsync.dashboard").fetchone() == (len(usd),)


async def test_cancel_void_refund_and_a_deleted_capture(shop: Shop,
                                                        medusa_db: psycopg.Connection) -> None:
    conn = medusa_db
    shops.generate(conn, 40, seed=0.6, name="medusa")
    conn.commit()
    pending, paid = conn.execute("""
        SELECT (SELECT o.id FROM medusa."order" o JOIN medusa.order_payment_collection opc
                ON opc.order_id = o.id JOIN medusa.payment_collection pc
                ON pc.id = opc.payment_collection_id
                WHERE pc.status = 'authorized' AND o.currency_code = 'eur' LIMIT 1),
               (SELECT o.id FROM medusa."order" o WHERE o.status = 'pending' AND o.version = 1
                AND o.currency_code = 'eur' AND medusa_qbsync.order_captured(o.id) > 0
                ORDER BY o.display_id LIMIT 1)""").fetchone()  # type: ignore[misc]
    assert pending
    assert paid
    (capture, payment_id, captured) = conn.execute(
        "SELECT c.id, c.payment_id, c.amount FROM medusa.capture c "
        "JOIN medusa.payment p ON p.id = c.payment_id JOIN medusa.order_payment_collection opc "
        "ON opc.payment_collection_id = p.payment_collection_id WHERE opc.order_id = %s",
        (paid,)).fetchone()  # type: ignore[misc]
    async with running(shop):
        await drained(shop.url)
        invoice_id = state(conn, "order", pending)[0]  # type: ignore[index]
        # canceled before capture: Medusa cancels the order and its authorization
        conn.execute("UPDATE medusa.\"order\" SET status = 'canceled', canceled_at = now() "
                     "WHERE id = %s", (pending,))
        # a refund of part of a captured order, as Medusa's refund workflow records it
        conn.execute(
            "INSERT INTO medusa.refund (id, amount, raw_amount, payment_id, note) "
            "VALUES ('ref_TEST', 7.5, '{\"value\": \"7.5\", \"precision\": 20}', %s, 'Goodwill')",
            (payment_id,))
        conn.commit()
        await drained(shop.url)
        # then the capture itself is undone (soft-deleted)
        conn.execute("UPDATE medusa.capture SET deleted_at = now() WHERE id = %s", (capture,))
        conn.commit()
        await drained(shop.url)
    voided = shop.emu.get_entity(shop.realm_id, "Invoice", invoice_id)
    assert voided is not None
    assert d(voided["TotalAmt"]) == 0
    assert str(voided.get("PrivateNote") or "").startswith("Voided")
    assert state(conn, "order", pending)[1] == "voided"  # type: ignore[index]
    receipt_id, status, _ = state(conn, "refund", "ref_TEST")  # type: ignore[misc]
    receipt = shop.emu.get_entity(shop.realm_id, "RefundReceipt", receipt_id)
    assert status == "synced"
    assert receipt is not None
    assert d(receipt["TotalAmt"]) == Decimal("7.50")
    assert state(conn, "payment", capture) == (None, "deleted", None)
    paid_invoice = shop.emu.get_entity(shop.realm_id, "Invoice",
                                       state(conn, "order", paid)[0])  # type: ignore[index]
    assert paid_invoice is not None
    assert d(paid_invoice["Balance"]) == money(captured)  # open again: its payment is gone
    assert all(IN_USD.format(realm=shop.realm_id) in error for error in dead(conn).values())


@pytest.mark.parametrize("batch_threshold", [200, 3], ids=["one by one", "in batches"])
async def test_euro_orders_in_a_dollar_company_go_dead_saying_so_and_the_rest_syncs(
    medusa_db: psycopg.Connection, emu: Emulator, batch_threshold: int
) -> None:
    """The daemon learns the company's currency from its preferences: every euro order, its
    payments and refunds go dead on their first try with both currencies named and what to
    do, and nothing is sent for them; the dollar orders sync, in dollars."""
    conn = medusa_db
    shop = await dollar_company_shop(conn_url(conn), emu)
    shops.generate(conn, 50, seed=0.25, name="medusa")
    conn.commit()
    async with running(shop, batch_threshold=batch_threshold):
        await drained(shop.url, within=120)
    usd = {k for (k,) in conn.execute(
        "SELECT id FROM medusa.\"order\" o WHERE currency_code = 'usd' "
        "AND medusa_qbsync.keeps_invoice(o)")}
    eur = {k for (k,) in conn.execute(f"SELECT id FROM ({INVOICED}) x")}
    assert usd
    assert eur
    # the dollar orders: invoices in dollars, to the cent of Medusa's total
    totals = {order_id: total for order_id, total in conn.execute(
        f"SELECT t.id, t.total FROM ({MEDUSA_TOTAL}) t")}
    invoices = {inv["Id"]: inv for inv in entities(shop, "Invoice")}
    assert len(invoices) == len(usd)
    for order_id in usd:
        qbo_id, status, _ = state(conn, "order", order_id)  # type: ignore[misc]
        assert status == "synced"
        assert invoices[qbo_id]["CurrencyRef"] == {"value": "USD"}
        assert d(invoices[qbo_id]["TotalAmt"]) == money(totals[order_id])
    # the euro ones, with their payments and refunds: dead on the first try, unsent
    failed = dead(conn)
    assert {k for (e, k) in failed if e == "order"} == eur
    assert {e for e, _ in failed} == {"order", "payment", "refund"}
    assert set(dead_codes(conn).values()) == {CURRENCY}
    for (entity, key), error in failed.items():
        assert (f"the body is in EUR (CurrencyRef) but QuickBooks company {shop.realm_id} "
                "keeps its books in USD and has multicurrency off") in error, error
        assert "turn multicurrency on in QuickBooks" in error
        assert state(conn, entity, key) == (None, "failed", error)
    assert conn.execute("SELECT max(attempts) FROM qbsync.outbox WHERE state = 'dead'"
                        ).fetchone() == (1,)
    assert emu.counters.count(status=400, realm=shop.realm_id) == 0   # nothing refused there
    assert all(p["CurrencyRef"] == {"value": "USD"} for p in entities(shop, "Payment"))


async def test_bad_rows_go_dead_with_their_reasons_while_the_rest_syncs(
    shop: Shop, medusa_db: psycopg.Connection
) -> None:
    conn = medusa_db
    shops.generate(conn, 30, seed=-0.4, name="medusa")
    eur = [k for (k,) in conn.execute(
        f"SELECT id FROM ({INVOICED}) x ORDER BY id")]
    edited, renamed = eur[0], eur[1]
    # a line changed behind Medusa's back: its order summary no longer agrees
    conn.execute("UPDATE medusa.order_line_item SET unit_price = unit_price + 1 WHERE id = "
                 "(SELECT item_id FROM medusa.order_item WHERE order_id = %s LIMIT 1)", (edited,))
    conn.execute("UPDATE medusa.\"order\" SET custom_display_id = 'WEB-EUROPE-2026-0000000042' "
                 "WHERE id = %s", (renamed,))
    # a capture larger than the invoice (an order edited down after its capture)
    (overpaid,) = conn.execute(
        "UPDATE medusa.capture SET amount = amount + 10 WHERE id = "
        "(SELECT c.id FROM medusa.capture c JOIN medusa.payment p ON p.id = c.payment_id "
        "JOIN medusa.order_payment_collection opc "
        "ON opc.payment_collection_id = p.payment_collection_id WHERE opc.order_id = ANY(%s) "
        "AND opc.order_id NOT IN (%s, %s) ORDER BY c.id LIMIT 1) RETURNING id",
        (eur, edited, renamed)).fetchone()  # type: ignore[misc]
    conn.commit()
    async with running(shop):
        await drained(shop.url, within=120)
    failed = dead(conn)
    reasons = {key: error for (entity, key), error in failed.items() if entity == "order"}
    assert "Medusa's order summary says" in reasons.pop(edited)
    assert "order number WEB-EUROPE-2026-0000000042 is longer than QuickBooks' 21 characters" in (
        reasons.pop(renamed))
    assert all(IN_USD.format(realm=shop.realm_id) in error for error in reasons.values())
    assert "captured in all, more than the invoice total" in failed[("payment", overpaid)]
    synced = conn.execute("SELECT count(*) FROM medusa_qbsync.sync_state WHERE entity = 'order' "
                          "AND status = 'synced'").fetchone()
    assert synced is not None
    assert synced[0] >= len(eur) - 3
    assert len(entities(shop, "Invoice")) == synced[0]
