"""dixis.generate(): volumes, realism, consistency with the mapping, determinism."""

from __future__ import annotations

import json
from decimal import Decimal

import psycopg
import pytest

from qbsync import shop
from qbsync.errors import QbsyncError
from tests.integration.dixis_helpers import money

FINGERPRINT = """
SELECT (SELECT md5(string_agg(c::text, '|' ORDER BY c.id)) FROM dixis.customers c),
       (SELECT md5(string_agg(o::text, '|' ORDER BY o.id)) FROM dixis.orders o),
       (SELECT md5(string_agg(i::text, '|' ORDER BY i.id)) FROM dixis.order_items i),
       (SELECT md5(string_agg(concat_ws(',', p.id, p.name, p.sku, p.price, p.vat_rate,
                                        p.category_id, p.producer_id, p.stock_quantity),
                              '|' ORDER BY p.id)) FROM dixis.products p)
"""


def untrack(conn: psycopg.Connection) -> None:
    """The generator is a plain function; benchmarks load with capture off."""
    for table, entity in (("dixis.orders", "order"), ("dixis.order_items", "order")):
        conn.execute("SELECT qbsync.untrack(%s, %s)", (table, entity))


def test_generate_small_volume(dixis_db: psycopg.Connection) -> None:
    counts = shop.generate(dixis_db, 600, seed=0.42)
    assert counts["orders"] == 600
    assert counts["customers"] == 200
    assert 600 <= counts["order_items"] <= 3000
    assert counts["products"] >= 150

    stats = dixis_db.execute("""
        SELECT count(*) FILTER (WHERE status = 'completed'),
               count(*) FILTER (WHERE status = 'pending'),
               count(*) FILTER (WHERE status IN ('cancelled', 'refunded')),
               count(*) FILTER (WHERE customer_id IS NULL),
               count(*) FILTER (WHERE discount > 0),
               count(*) FILTER (WHERE payment_fee > 0),
               count(*) FILTER (WHERE shipping_fee > 0),
               count(*) FILTER (WHERE billing_first_name ~ '^[Ά-ώ]+$')
        FROM dixis.orders""").fetchone()
    assert stats is not None
    completed, pending, voidable, guests, coupons, cod, shipped, greek = stats
    assert 480 <= completed <= 570
    assert pending > 0
    assert voidable > 0
    assert 30 <= guests <= 100
    assert coupons > 0
    assert cod > 0
    assert shipped > 0
    assert greek == 600
    lines = dixis_db.execute("""
        SELECT count(*) FILTER (WHERE unit_price = 0), count(*) FILTER (WHERE discount > 0),
               count(*) FILTER (WHERE quantity <> trunc(quantity)),
               count(DISTINCT coalesce(vat_rate, -1))
        FROM dixis.order_items""").fetchone()
    assert lines is not None
    assert lines[0] > 0
    assert lines[1] > 0
    assert lines[2] > 0
    assert lines[3] == 3  # 24, 13 and 6 % all sold
    assert dixis_db.execute(
        "SELECT count(*) FROM dixis.orders o WHERE subtotal <> "
        "(SELECT sum(line_total) FROM dixis.order_items i WHERE i.order_id = o.id)"
    ).fetchone() == (0,)


def test_every_generated_completed_order_maps_to_its_total(dixis_db: psycopg.Connection) -> None:
    untrack(dixis_db)
    shop.generate(dixis_db, 400, seed=-0.3)
    rows = dixis_db.execute("""
        SELECT o.id, o.total, m.body
        FROM dixis.orders o, LATERAL (SELECT qbsync_map."order"(o.id::text)::text AS body) m
        WHERE o.status = 'completed'""").fetchall()
    assert len(rows) > 300
    for order_id, total, body in rows:
        invoice = json.loads(body, parse_float=Decimal)
        amounts = []
        for line in invoice["Line"]:
            d = line["SalesItemLineDetail"]
            exact = Decimal(d["Qty"]) * Decimal(d["UnitPrice"])
            # half away from zero, as PostgreSQL and QuickBooks round
            assert line["Amount"] == money(exact), (order_id, line)
            amounts.append(line["Amount"])
        assert sum(amounts) == total, order_id
        assert len(invoice["DocNumber"]) <= 21
    # every customer, guest and product of the data maps too
    for entity in ("customer", "product"):
        query = (f'SELECT count(*) FROM qbsync_map."{entity}_keys"() k '
                 f'WHERE qbsync_map."{entity}"(k) IS NULL')
        assert dixis_db.execute(query).fetchone() == (0,)  # type: ignore[arg-type]


def test_generate_is_deterministic_for_a_seed(dixis_db: psycopg.Connection) -> None:
    untrack(dixis_db)
    reset = ("TRUNCATE dixis.refunds, dixis.order_items, dixis.orders, dixis.customers, "
             "dixis.products, "
             "dixis.producers, dixis.categories RESTART IDENTITY")
    runs = []
    for seed in (0.42, 0.42, 0.5):
        dixis_db.execute(reset)
        shop.generate(dixis_db, 150, seed=seed)
        runs.append(dixis_db.execute(FINGERPRINT).fetchone())
    assert runs[0] == runs[1]
    assert runs[0][1] != runs[2][1]  # another seed, other orders


def test_generate_appends_and_validates(dixis_db: psycopg.Connection) -> None:
    shop.generate(dixis_db, 30)
    shop.generate(dixis_db, 30, seed=0.1)
    assert dixis_db.execute("SELECT count(*), count(DISTINCT id) FROM dixis.orders"
                            ).fetchone() == (60, 60)
    assert shop.generate(dixis_db, 0)["orders"] == 0
    with pytest.raises(QbsyncError, match="seed"):
        shop.generate(dixis_db, 10, seed=2.0)
