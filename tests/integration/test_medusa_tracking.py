"""The Medusa capture rules (track.sql): what each write of Medusa's enqueues, and the admin
functions of admin.sql."""

from __future__ import annotations

from datetime import date

import psycopg

from qbsync import shop
from tests.integration.dixis_helpers import clear_outbox, outbox


def one(conn: psycopg.Connection, query: str) -> str:
    row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return str(row[0])


def test_what_medusa_writes_enqueues(medusa_db: psycopg.Connection) -> None:
    conn = medusa_db
    shop.generate(conn, 20, seed=0.15, name="medusa")
    queued = outbox(conn)
    orders = {k for (k,) in conn.execute('SELECT id FROM medusa."order" WHERE NOT is_draft_order')}
    captures = {k for (k,) in conn.execute("SELECT id FROM medusa.capture")}
    refunds = {k for (k,) in conn.execute("SELECT id FROM medusa.refund")}
    # placing orders queues them, their captures and refunds; sign-ups and the catalogue
    # nothing (customers and items go as dependencies of their first invoice); drafts nothing
    assert {k for e, k in queued if e == "order"} == orders
    assert {k for e, k in queued if e == "payment"} == captures
    assert {k for e, k in queued if e == "refund"} == refunds
    assert {e for e, _ in queued} <= {"order", "payment", "refund"}
    clear_outbox(conn)

    order_id = one(conn, "SELECT id FROM medusa.\"order\" WHERE status = 'pending' "
                         "AND version = 1 AND currency_code = 'eur' ORDER BY display_id LIMIT 1")
    item_id = one(conn, f"SELECT item_id FROM medusa.order_item WHERE order_id = '{order_id}' "
                        "LIMIT 1")
    # a tax line or an adjustment reaches its order through order_item
    conn.execute("UPDATE medusa.order_line_item_tax_line SET code = code || 'x' "
                 "WHERE item_id = %s", (item_id,))
    assert outbox(conn) == [("order", order_id)]
    clear_outbox(conn)
    # so do a line item and a shipping method edited in place (the invoice's descriptions
    # and amounts; check-mapping's capture rule asks for them)
    conn.execute("UPDATE medusa.order_line_item SET title = title || ' (gift)' WHERE id = %s",
                 (item_id,))
    assert outbox(conn) == [("order", order_id)]
    clear_outbox(conn)
    conn.execute("UPDATE medusa.order_shipping_method SET name = name || ' express' WHERE id = "
                 "(SELECT shipping_method_id FROM medusa.order_shipping WHERE order_id = %s "
                 "LIMIT 1)", (order_id,))
    assert outbox(conn) == [("order", order_id)]
    clear_outbox(conn)
    # an edit: Medusa writes the next version's rows and bumps the order's version
    conn.execute("INSERT INTO medusa.order_item (id, order_id, version, item_id, quantity, "
                 "raw_quantity, fulfilled_quantity, shipped_quantity, return_requested_quantity, "
                 "return_received_quantity, return_dismissed_quantity, written_off_quantity) "
                 "SELECT id || 'v2', order_id, 2, item_id, quantity + 1, raw_quantity, 0, 0, 0, "
                 "0, 0, 0 FROM medusa.order_item WHERE order_id = %s", (order_id,))
    assert outbox(conn) == [("order", order_id)]
    clear_outbox(conn)

    # a customer or a variant changes: queued only once it is in QuickBooks
    customer_id = one(conn, f"SELECT customer_id FROM medusa.\"order\" WHERE id = '{order_id}'")
    variant_id = one(conn, f"SELECT variant_id FROM medusa.order_line_item WHERE id = '{item_id}'")
    phone = "UPDATE medusa.customer SET phone = %s WHERE id = %s"
    conn.execute(phone, ("+30 2100000000", customer_id))
    conn.execute("UPDATE medusa.product_variant SET title = title || ' ' WHERE id = %s",
                 (variant_id,))
    assert outbox(conn) == []
    clear_outbox(conn)
    conn.execute("SELECT qbsync_map.customer_outcome(%s, '{\"status\": \"synced\", "
                 "\"qbo_id\": \"7\"}')", (customer_id,))
    conn.execute("SELECT qbsync_map.product_outcome(%s, '{\"status\": \"synced\", "
                 "\"qbo_id\": \"8\"}')", (variant_id,))
    conn.commit()
    conn.execute(phone, ("+30 2100000001", customer_id))
    conn.execute("UPDATE medusa.price SET amount = amount + 1 WHERE price_set_id = (SELECT "
                 "price_set_id FROM medusa.product_variant_price_set WHERE variant_id = %s)",
                 (variant_id,))
    assert outbox(conn) == [("customer", customer_id), ("product", variant_id)]
    clear_outbox(conn)
    # a product's title names its variants' items: the synced ones are queued
    conn.execute("UPDATE medusa.product SET title = title || ' (new)' WHERE id = "
                 "(SELECT product_id FROM medusa.product_variant WHERE id = %s)", (variant_id,))
    assert outbox(conn) == [("product", variant_id)]
    clear_outbox(conn)
    # the daemon's own write-backs are never captured
    conn.execute("SET qbsync.origin = 'daemon'")
    conn.execute(phone, ("+30 2100000002", customer_id))
    assert outbox(conn) == []


def test_admin_functions(medusa_db: psycopg.Connection) -> None:
    conn = medusa_db
    shop.generate(conn, 60, seed=0.8, name="medusa")
    placed = conn.execute("SELECT count(*) FROM medusa.\"order\" WHERE NOT is_draft_order "
                          "AND status <> 'canceled'").fetchone()
    assert conn.execute("SELECT qbsync_map.order_unsynced_count()").fetchone() == placed
    order_id = one(conn, 'SELECT id FROM medusa."order" LIMIT 1')
    assert conn.execute("SELECT qbsync_map.order_key_exists(%s), "
                        "qbsync_map.order_key_exists('order_NOPE'), "
                        "qbsync_map.product_key_exists('fee:shipping')",
                        (order_id,)).fetchone() == (True, False, True)
    # the ledger lists every document the mappings send, with their totals
    ledger = conn.execute("SELECT entity, count(*), sum(amount) FROM "
                          "qbsync_map.order_ledger('2025-01-01', '2026-12-31') GROUP BY 1"
                          ).fetchall()
    counts = {entity: n for entity, n, _ in ledger}
    invoiced = conn.execute("SELECT count(*) FROM medusa.\"order\" o WHERE "
                            "medusa_qbsync.keeps_invoice(o) AND currency_code = 'eur'").fetchone()
    assert invoiced is not None
    assert counts["order"] == invoiced[0]
    assert counts["payment"] > 0
    revenue = conn.execute("SELECT net, gross, orders FROM qbsync_map.order_revenue(%s, %s)",
                           (date(2025, 1, 1), date(2026, 12, 31))).fetchone()
    assert revenue is not None
    net, gross, orders = revenue
    assert orders == invoiced[0]
    assert 0 < net < gross
    invoices_total = next(total for entity, _, total in ledger if entity == "order")
    refunds_total = next((total for entity, _, total in ledger if entity == "refund"), 0)
    assert gross == invoices_total - refunds_total
    # a period maps its own documents only: an order of another day that cannot be mapped
    # at all (Medusa's summary unreadable) leaves a day's ledger and revenue alone
    day, other = conn.execute(
        "SELECT (SELECT created_at::date FROM medusa.\"order\" o WHERE medusa_qbsync."
        "keeps_invoice(o) AND currency_code = 'eur' ORDER BY created_at LIMIT 1), "
        "(SELECT id FROM medusa.\"order\" o WHERE medusa_qbsync.keeps_invoice(o) "
        "AND currency_code = 'eur' ORDER BY created_at DESC LIMIT 1)").fetchone() or (None, None)
    conn.execute("UPDATE medusa.order_summary SET totals = jsonb_set(totals, "
                 "'{raw_current_order_total,value}', '\"unreadable\"') WHERE order_id = %s",
                 (other,))
    one_day = conn.execute("SELECT entity, key FROM qbsync_map.order_ledger(%s, %s)",
                           (day, day)).fetchall()
    assert ("order", other) not in one_day
    assert any(entity == "order" for entity, _ in one_day)
    day_revenue = conn.execute("SELECT orders FROM qbsync_map.order_revenue(%s, %s)",
                               (day, day)).fetchone()
    assert day_revenue is not None
    assert day_revenue[0] >= 1
