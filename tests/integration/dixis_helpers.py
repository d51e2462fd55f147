"""Small builders for Dixis rows and readers of qbsync_map output, shared by the Dixis tests."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
import pytest

CENT = Decimal("0.01")


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def category(conn: psycopg.Connection, vat_rate: int, slug: str | None = None) -> int:
    slug = slug or f"vat-{vat_rate}"
    row = conn.execute(
        "INSERT INTO dixis.categories (slug, name, vat_rate) VALUES (%s, %s, %s) "
        "ON CONFLICT (slug) DO UPDATE SET slug = excluded.slug RETURNING id",
        (slug, f"Κατηγορία ΦΠΑ {vat_rate}%", vat_rate),
    ).fetchone()
    assert row
    return int(row[0])


def producer(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "INSERT INTO dixis.producers (name, region) VALUES ('Ελαιώνες Μεσσηνίας', 'Μεσσηνία') "
        "RETURNING id"
    ).fetchone()
    assert row
    return int(row[0])


_sku_counter = iter(range(1, 10**9))


def product(conn: psycopg.Connection, name: str = "Ελαιόλαδο Κορωνέικη 1L",
            price: str = "12.90", *, vat: int = 13, vat_override: int | None = None,
            sku: str | None = None, active: bool = True) -> int:
    sku = sku or f"TST-{next(_sku_counter):04d}"
    row = conn.execute(
        "INSERT INTO dixis.products (producer_id, category_id, name, sku, price, vat_rate, "
        "active, stock_quantity) VALUES (%s, %s, %s, %s, %s, %s, %s, 100) RETURNING id",
        (producer(conn), category(conn, vat), name, sku, Decimal(price), vat_override, active),
    ).fetchone()
    assert row
    return int(row[0])


def customer(conn: psycopg.Connection, first: str = "Γιώργος", last: str = "Παπαδόπουλος",
             email: str | None = None, **extra: Any) -> int:
    columns = {
        "first_name": first, "last_name": last,
        "email": email or f"c{next(_sku_counter)}@example.gr",
        "phone": "+30 6912345678", "billing_address": "Οδός Ερμού 12",
        "billing_city": "Αθήνα", "billing_postcode": "10563", **extra,
    }
    query = "INSERT INTO dixis.customers ({}) VALUES ({}) RETURNING id".format(
        ", ".join(columns), ", ".join(["%s"] * len(columns)))
    row = conn.execute(query, list(columns.values())).fetchone()  # type: ignore[arg-type]
    assert row
    return int(row[0])


def order(conn: psycopg.Connection, lines: list[tuple[int | None, str, str]] | None = None, *,
          customer_id: int | None = None, status: str = "completed", shipping: str = "0",
          payment_fee: str = "0", discount: str = "0", line_discounts: list[str] | None = None,
          guest: dict[str, str] | None = None, created_at: str = "2026-03-14 12:00+02",
          coupon: str | None = None) -> int:
    """An order with lines (product_id, quantity, unit_price); amounts kept consistent."""
    lines = lines if lines is not None else []
    line_discounts = line_discounts or ["0"] * len(lines)
    totals = [money(Decimal(q) * Decimal(p)) - Decimal(d)
              for (_, q, p), d in zip(lines, line_discounts, strict=True)]
    subtotal = sum(totals, Decimal(0))
    total = subtotal + Decimal(shipping) + Decimal(payment_fee) - Decimal(discount)
    billing = guest or {}
    if customer_id is not None and not guest:
        c = conn.execute(
            "SELECT first_name, last_name, email, billing_address, billing_city, "
            "billing_postcode FROM dixis.customers WHERE id = %s", (customer_id,)).fetchone()
        assert c
        billing = dict(zip(("billing_first_name", "billing_last_name", "billing_email",
                            "billing_address", "billing_city", "billing_postcode"), c,
                           strict=True))
    row = conn.execute(
        "INSERT INTO dixis.orders (customer_id, status, billing_first_name, billing_last_name, "
        "billing_email, billing_address, billing_city, billing_postcode, subtotal, shipping_fee, "
        "payment_fee, discount, total, coupon_code, payment_method, created_at, completed_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "CASE WHEN %s IN ('completed', 'refunded') THEN %s::timestamptz + interval '2 days' END)"
        " RETURNING id",
        (customer_id, status, billing.get("billing_first_name"), billing.get("billing_last_name"),
         billing.get("billing_email"), billing.get("billing_address"),
         billing.get("billing_city"), billing.get("billing_postcode"), subtotal,
         Decimal(shipping), Decimal(payment_fee), Decimal(discount), total, coupon,
         "cod" if Decimal(payment_fee) else "card", created_at, status, created_at),
    ).fetchone()
    assert row
    order_id = int(row[0])
    for (product_id, q, p), d, t in zip(lines, line_discounts, totals, strict=True):
        name = "?"
        if product_id is not None:
            r = conn.execute("SELECT name FROM dixis.products WHERE id = %s",
                             (product_id,)).fetchone()
            name = r[0] if r else "?"
        conn.execute(
            "INSERT INTO dixis.order_items (order_id, product_id, product_name, quantity, "
            "unit_price, discount, line_total) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (order_id, product_id, name, Decimal(q), Decimal(p), Decimal(d), t))
    return order_id


def mapped(conn: psycopg.Connection, entity: str, key: str | int) -> dict[str, Any] | None:
    """qbsync_map.<entity>(key), numbers as Decimal (exactly what the SQL produced)."""
    query = f'SELECT qbsync_map."{entity}"(%s)::text'
    row = conn.execute(query, (str(key),)).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return None if row[0] is None else json.loads(row[0], parse_float=Decimal)


def refused(conn: psycopg.Connection, entity: str, key: str | int) -> str:
    """The QB001 message the mapping raises for this key (fails the test if it maps)."""
    with pytest.raises(psycopg.Error) as info, conn.transaction():
        mapped(conn, entity, key)
    assert info.value.sqlstate == "QB001", info.value
    return str(info.value.diag.message_primary)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def outbox(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Pending outbox rows once the captured changes are collected (as a claim does)."""
    conn.execute("SELECT qbsync.collect_changes()")
    return conn.execute(
        "SELECT entity, key FROM qbsync.outbox WHERE state = 'pending' ORDER BY entity, key"
    ).fetchall()


def pay(conn: psycopg.Connection, order_id: int, *, at: str = "2026-03-14 12:00+02",
        reference: str | None = "ch_3PqRsT", amount: str | None = None,
        method: str | None = None) -> None:
    """Record the order's payment (the whole total unless amount is given)."""
    conn.execute(
        "UPDATE dixis.orders SET paid_at = %s, payment_reference = %s, "
        "amount_paid = coalesce(%s::numeric, total), "
        "payment_method = coalesce(%s, payment_method) WHERE id = %s",
        (at, reference, amount, method, order_id))


def refund(conn: psycopg.Connection, order_id: int, amount: str | None = None, *,
           method: str = "card", reason: str = "Σπασμένο βάζο",
           at: str = "2026-03-20 10:00+02", reference: str | None = "re_1") -> int:
    """A refund of the order (its whole total unless amount is given); returns its id."""
    row = conn.execute(
        "INSERT INTO dixis.refunds (order_id, amount, reason, refunded_at, method, reference) "
        "SELECT id, coalesce(%s::numeric, total), %s, %s, %s, %s FROM dixis.orders "
        "WHERE id = %s RETURNING id",
        (amount, reason, at, method, reference, order_id)).fetchone()
    assert row
    return int(row[0])


def clear_outbox(conn: psycopg.Connection) -> None:
    """Empty the outbox and commit: a capture trigger queues a key once per transaction,
    so a later change is only captured again in a new transaction."""
    conn.execute("DELETE FROM qbsync.changes")
    conn.execute("DELETE FROM qbsync.outbox")
    conn.commit()
