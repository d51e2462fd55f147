"""medusa.generate(): rows in the shape Medusa writes them (compared with the rows Medusa's own
workflows wrote, tests/fixtures/medusa), realistic volumes, every order consistent with
Medusa's own figures and with the mapping, determinism."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import psycopg
import pytest

from qbsync import shop
from qbsync.errors import QbsyncError
from tests.integration.dixis_helpers import money
from tests.integration.medusa_helpers import MEDUSA_TOTAL, load_checkout, untrack

# The tables an order's life writes, as Medusa writes them.
ORDER_TABLES = ("order", "order_address", "order_item", "order_line_item",
                "order_line_item_tax_line", "order_line_item_adjustment", "order_shipping",
                "order_shipping_method", "order_shipping_method_tax_line",
                "order_shipping_method_adjustment", "order_summary", "order_transaction",
                "order_change", "order_change_action", "order_credit_line", "order_promotion",
                "order_payment_collection", "payment_collection", "payment_session", "payment",
                "capture", "refund", "customer")

FINGERPRINT = """
SELECT (SELECT md5(string_agg(c::text, '|' ORDER BY c.id)) FROM medusa.customer c),
       (SELECT md5(string_agg(o::text, '|' ORDER BY o.id)) FROM medusa."order" o),
       (SELECT md5(string_agg(i::text, '|' ORDER BY i.id)) FROM medusa.order_line_item i),
       (SELECT md5(string_agg(a::text, '|' ORDER BY a.id))
        FROM medusa.order_line_item_adjustment a),
       (SELECT md5(string_agg(s::text, '|' ORDER BY s.id)) FROM medusa.order_summary s),
       (SELECT md5(string_agg(c::text, '|' ORDER BY c.id)) FROM medusa.capture c),
       (SELECT md5(string_agg(r::text, '|' ORDER BY r.id)) FROM medusa.refund r)
"""


def truncate_medusa(conn: psycopg.Connection) -> None:
    tables = [t for (t,) in conn.execute(
        "SELECT format('medusa.%I', tablename) FROM pg_tables WHERE schemaname = 'medusa'")]
    conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")  # type: ignore[arg-type]


def filled_columns(conn: psycopg.Connection, table: str) -> set[str]:
    """The columns of a table that hold a value in some row."""
    columns = [c for (c,) in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped", (f'medusa."{table}"',))]
    found = conn.execute(
        "SELECT " + ", ".join(f'count("{c}")' for c in columns)  # type: ignore[arg-type]
        + f' FROM medusa."{table}"').fetchone()
    assert found is not None
    return {c for c, n in zip(columns, found, strict=True) if n}


def id_prefixes(conn: psycopg.Connection, table: str) -> set[str]:
    return {p for (p,) in conn.execute(
        f'SELECT DISTINCT split_part(id, \'_\', 1) FROM medusa."{table}"')}  # type: ignore[arg-type]


def test_generated_rows_have_the_shape_medusa_writes(medusa_db: psycopg.Connection) -> None:
    load_checkout(medusa_db)
    medusa_wrote = {t: filled_columns(medusa_db, t) for t in ORDER_TABLES}
    medusa_ids = {t: id_prefixes(medusa_db, t) for t in ORDER_TABLES}
    medusa_summary = {k for (k,) in medusa_db.execute(
        "SELECT DISTINCT jsonb_object_keys(totals) FROM medusa.order_summary")}
    truncate_medusa(medusa_db)  # the generator's own store, nothing of the fixture's
    shop.generate(medusa_db, 400, seed=0.3, name="medusa")
    missing = {t: sorted(medusa_wrote[t] - filled_columns(medusa_db, t) - {"deleted_at"})
               for t in ORDER_TABLES}
    # every column Medusa's own rows fill, the generator fills too
    assert {t: m for t, m in missing.items() if m} == {}
    assert {t: id_prefixes(medusa_db, t) for t in ORDER_TABLES} == medusa_ids
    ids = medusa_db.execute(
        'SELECT count(*) FILTER (WHERE id !~ \'^[a-z_]+_[0-9A-Z]{26}$\') FROM medusa."order"'
    ).fetchone()
    assert ids == (0,)
    generated_summary = {k for (k,) in medusa_db.execute(
        "SELECT DISTINCT jsonb_object_keys(totals) FROM medusa.order_summary")}
    assert generated_summary == medusa_summary
    # raw_* (Medusa's BigNumber) and the numeric column always agree
    disagree = medusa_db.execute("""
        SELECT (SELECT count(*) FROM medusa.order_line_item_adjustment
                WHERE (raw_amount->>'value')::numeric <> amount),
               (SELECT count(*) FROM medusa.capture
                WHERE (raw_amount->>'value')::numeric <> amount),
               (SELECT count(*) FROM medusa.order_item
                WHERE (raw_quantity->>'value')::numeric <> quantity)
    """).fetchone()
    assert disagree == (0, 0, 0)


def test_generate_small_volume(medusa_db: psycopg.Connection) -> None:
    counts = shop.generate(medusa_db, 600, seed=0.42, name="medusa")
    assert counts["orders"] == 600
    assert 200 < counts["customers"] < 320  # 200 account holders and the guests who bought
    assert 600 < counts["order_items"] < 1800
    assert counts["variants"] == 28
    assert 0 < counts["refunds"] < counts["captures"] < 600
    stats = medusa_db.execute("""
        SELECT count(*) FILTER (WHERE o.status = 'pending'),
               count(*) FILTER (WHERE o.status = 'completed'),
               count(*) FILTER (WHERE o.status = 'canceled'),
               count(*) FILTER (WHERE o.is_draft_order),
               count(*) FILTER (WHERE NOT c.has_account),
               count(*) FILTER (WHERE o.currency_code = 'usd'),
               count(*) FILTER (WHERE o.version = 2)
        FROM medusa."order" o JOIN medusa.customer c ON c.id = o.customer_id""").fetchone()
    assert stats is not None
    pending, completed, canceled, drafts, guests, dollars, versioned = stats
    assert 450 < pending < 560
    assert completed > 20
    assert canceled > 5
    assert drafts < 15
    assert 50 < guests < 140
    assert 5 < dollars < 50
    assert versioned > 10  # refunds and cancellations are new order versions
    lines = medusa_db.execute("""
        SELECT count(DISTINCT t.rate), count(*) FILTER (WHERE a.id IS NOT NULL),
               count(*) FILTER (WHERE NOT li.is_tax_inclusive)
        FROM medusa.order_line_item li
        LEFT JOIN medusa.order_line_item_tax_line t ON t.item_id = li.id
        LEFT JOIN medusa.order_line_item_adjustment a ON a.item_id = li.id""").fetchone()
    assert lines is not None
    assert lines[0] == 3  # 24, 13 and 6 % all sold
    assert lines[1] > 0  # promotions
    assert lines[2] > 0  # dollar prices before tax
    assert medusa_db.execute(
        "SELECT count(*) FROM medusa.order_shipping_method_adjustment").fetchone() != (0,)


def test_every_generated_invoice_is_medusa_s_total(medusa_db: psycopg.Connection) -> None:
    untrack(medusa_db)
    shop.generate(medusa_db, 300, seed=-0.3, name="medusa")
    rows = medusa_db.execute(f"""
        SELECT t.id, t.total, qbsync_map."order"(t.id)::text
        FROM ({MEDUSA_TOTAL}) t JOIN medusa."order" o ON o.id = t.id
        WHERE medusa_qbsync.keeps_invoice(o) AND o.currency_code = 'eur'""").fetchall()
    assert len(rows) > 250
    for order_id, total, body in rows:
        invoice = json.loads(body, parse_float=Decimal)
        for line in invoice["Line"]:
            d = line["SalesItemLineDetail"]
            assert line["Amount"] == money(Decimal(d["Qty"]) * Decimal(d["UnitPrice"])), line
        assert sum(line["Amount"] for line in invoice["Line"]) == money(total), order_id
        assert re.fullmatch(r"MED-\d+", invoice["DocNumber"])
    # every capture and refund of those orders maps; the dollar orders' are refused
    for entity, table in (("payment", "capture"), ("refund", "refund")):
        bad = medusa_db.execute(f"""
            SELECT count(*) FROM medusa.{table} x
            JOIN medusa.payment p ON p.id = x.payment_id
            -- (CASE: the dollar ones are never mapped, they would raise)
            WHERE CASE WHEN p.currency_code = 'eur' THEN qbsync_map.{entity}(x.id) IS NULL END
        """).fetchone()
        assert bad == (0,), entity
    for entity in ("customer", "product"):
        query = (f'SELECT count(*) FROM qbsync_map."{entity}_keys"() k '
                 f'WHERE qbsync_map."{entity}"(k) IS NULL')
        assert medusa_db.execute(query).fetchone() == (0,)  # type: ignore[arg-type]


def test_generate_is_deterministic_for_a_seed(medusa_db: psycopg.Connection) -> None:
    untrack(medusa_db)
    runs = []
    for seed in (0.42, 0.42, 0.5):
        truncate_medusa(medusa_db)
        shop.generate(medusa_db, 120, seed=seed, name="medusa")
        runs.append(medusa_db.execute(FINGERPRINT).fetchone())
    assert runs[0] == runs[1]
    assert runs[0] is not None
    assert runs[2] is not None
    assert runs[0][1] != runs[2][1]  # another seed, other orders


def test_generate_appends_and_validates(medusa_db: psycopg.Connection) -> None:
    shop.generate(medusa_db, 30, name="medusa")
    shop.generate(medusa_db, 30, seed=0.1, name="medusa")
    assert medusa_db.execute('SELECT count(*), count(DISTINCT id), count(DISTINCT display_id) '
                             'FROM medusa."order"').fetchone() == (60, 60, 60)
    assert medusa_db.execute("SELECT count(*) FROM medusa.store").fetchone() == (1,)
    assert shop.generate(medusa_db, 0, name="medusa")["orders"] == 0
    with pytest.raises(QbsyncError, match="seed"):
        shop.generate(medusa_db, 10, seed=2.0, name="medusa")
