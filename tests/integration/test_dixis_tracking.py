"""Dixis capture rules (sql/shops/dixis/track.sql) and install_shop()."""

from __future__ import annotations

import psycopg
import pytest

from qbsync import shop
from qbsync.errors import QbsyncError
from tests.integration.dixis_helpers import customer, order, outbox, product


def clear(conn: psycopg.Connection) -> None:
    """A fresh start in a new transaction: capture remembers per transaction which keys it
    queued already (and a shop transaction never deletes outbox rows)."""
    conn.commit()
    conn.execute("DELETE FROM qbsync.changes")
    conn.execute("DELETE FROM qbsync.outbox")
    conn.commit()


def test_entities_are_registered(dixis_db: psycopg.Connection) -> None:
    rows = dixis_db.execute(
        "SELECT entity, qbo_type, max_attempts, backoff_seconds, deadline_seconds "
        "FROM qbsync.entities ORDER BY entity").fetchall()
    assert rows == [("customer", "Customer", 3, [30, 120, 300], 120),
                    ("order", "Invoice", 3, [60, 300, 900], 120),
                    ("payment", "Payment", 3, [60, 300, 900], 120),
                    ("product", "Item", 3, [30, 120, 300], 120),
                    ("refund", "RefundReceipt", 3, [60, 300, 900], 120)]


def test_order_is_captured_when_it_completes(dixis_db: psycopg.Connection) -> None:
    p = product(dixis_db)
    o = order(dixis_db, [(p, "1", "12.90")], customer_id=customer(dixis_db), status="pending")
    assert outbox(dixis_db) == []  # pending order and its lines: nothing yet
    dixis_db.execute("UPDATE dixis.orders SET status = 'paid' WHERE id = %s", (o,))
    assert outbox(dixis_db) == []
    dixis_db.execute("UPDATE dixis.orders SET status = 'completed', completed_at = now() "
                     "WHERE id = %s", (o,))
    assert outbox(dixis_db) == [("order", str(o))]


def test_completed_order_inserted_at_once_is_captured(dixis_db: psycopg.Connection) -> None:
    o = order(dixis_db, [(product(dixis_db), "1", "12.90")], customer_id=customer(dixis_db))
    assert outbox(dixis_db) == [("order", str(o))]  # order + its line coalesce


def test_billed_changes_of_a_completed_order(dixis_db: psycopg.Connection) -> None:
    p = product(dixis_db)
    o = order(dixis_db, [(p, "1", "12.90")], customer_id=customer(dixis_db))
    clear(dixis_db)
    dixis_db.execute("UPDATE dixis.orders SET updated_at = now(), quickbooks_sync_status = "
                     "'synced', quickbooks_invoice_id = '7' WHERE id = %s", (o,))
    assert outbox(dixis_db) == []  # housekeeping and write-back columns do not count
    dixis_db.execute("UPDATE dixis.orders SET billing_city = 'Πάτρα' WHERE id = %s", (o,))
    assert outbox(dixis_db) == [("order", str(o))]
    clear(dixis_db)
    dixis_db.execute("UPDATE dixis.order_items SET product_name = 'Ελαιόλαδο 1L (νέα σοδειά)' "
                     "WHERE order_id = %s", (o,))
    assert outbox(dixis_db) == [("order", str(o))]


def test_leaving_completed_is_captured(dixis_db: psycopg.Connection) -> None:
    o = order(dixis_db, [(product(dixis_db), "1", "12.90")], customer_id=customer(dixis_db))
    clear(dixis_db)
    dixis_db.execute("UPDATE dixis.orders SET status = 'cancelled' WHERE id = %s", (o,))
    assert outbox(dixis_db) == [("order", str(o))]
    clear(dixis_db)
    # pending -> cancelled never had an invoice: nothing to void
    o2 = order(dixis_db, [(product(dixis_db), "1", "1.00")], customer_id=customer(dixis_db),
               status="pending")
    dixis_db.execute("UPDATE dixis.orders SET status = 'cancelled' WHERE id = %s", (o2,))
    assert outbox(dixis_db) == []


def test_daemon_writes_enqueue_nothing(dixis_db: psycopg.Connection) -> None:
    o = order(dixis_db, [(product(dixis_db), "1", "12.90")], customer_id=customer(dixis_db),
              status="pending")
    dixis_db.execute("SET LOCAL qbsync.origin = 'daemon'")
    dixis_db.execute("UPDATE dixis.orders SET status = 'completed', completed_at = now() "
                     "WHERE id = %s", (o,))
    assert outbox(dixis_db) == []


def test_customers_and_products_only_once_in_quickbooks(dixis_db: psycopg.Connection) -> None:
    c, p = customer(dixis_db), product(dixis_db)
    dixis_db.execute("UPDATE dixis.customers SET phone = '+30 2101234567' WHERE id = %s", (c,))
    dixis_db.execute("UPDATE dixis.products SET price = 13.20 WHERE id = %s", (p,))
    assert outbox(dixis_db) == []  # not in QuickBooks yet: pushed on demand

    dixis_db.execute("SET LOCAL qbsync.origin = 'daemon'")
    dixis_db.execute("SELECT qbsync_map.customer_outcome(%s, '{\"status\": \"synced\", "
                     "\"qbo_id\": \"58\"}')", (str(c),))
    dixis_db.execute("SELECT qbsync_map.product_outcome(%s, '{\"status\": \"synced\", "
                     "\"qbo_id\": \"12\"}')", (str(p),))
    dixis_db.execute("RESET qbsync.origin")
    assert outbox(dixis_db) == []

    dixis_db.execute("UPDATE dixis.customers SET billing_address = 'Σταδίου 5' WHERE id = %s",
                     (c,))
    dixis_db.execute("UPDATE dixis.products SET stock_quantity = stock_quantity - 1 "
                     "WHERE id = %s", (p,))
    assert outbox(dixis_db) == [("customer", str(c))]  # stock moves cost no API call
    dixis_db.execute("UPDATE dixis.products SET price = 13.50 WHERE id = %s", (p,))
    assert outbox(dixis_db) == [("customer", str(c)), ("product", str(p))]


def test_category_vat_change_enqueues_its_synced_products(dixis_db: psycopg.Connection) -> None:
    a = product(dixis_db, vat=13)
    b = product(dixis_db, vat=13)
    product(dixis_db, vat=13, vat_override=24)  # has its own rate: unaffected
    dixis_db.execute("UPDATE dixis.products SET quickbooks_item_id = id::text")
    clear(dixis_db)
    dixis_db.execute("UPDATE dixis.categories SET vat_rate = 6 WHERE slug = 'vat-13'")
    assert outbox(dixis_db) == sorted([("product", str(a)), ("product", str(b))])


def test_install_shop_twice_keeps_data(dixis_db: psycopg.Connection) -> None:
    c = customer(dixis_db)
    dixis_db.commit()
    shop.install_shop(dixis_db, "dixis")
    assert dixis_db.execute("SELECT count(*) FROM dixis.customers WHERE id = %s",
                            (c,)).fetchone() == (1,)
    # orders (invoice and payment), order lines, customers, products, refunds
    assert dixis_db.execute("SELECT count(*) FROM qbsync.tracked").fetchone() == (6,)


def test_install_shop_refuses_unknown_shops_and_missing_qbsync(
        dixis_db: psycopg.Connection) -> None:
    with pytest.raises(QbsyncError, match="unknown sample shop 'nope'"):
        shop.install_shop(dixis_db, "nope")
    assert shop.shop_sql_dir("dixis").joinpath("mapping.sql").is_file()
    dixis_db.execute("DROP FUNCTION qbsync.track(text, text, text, text[], text)")
    with pytest.raises(QbsyncError, match="run `qbsync migrate` first"):
        shop.install_shop(dixis_db, "dixis")
