"""Readers of the Medusa sample shop shared by the Medusa tests: the checkout fixture (rows
written by Medusa's own workflows, with the totals Medusa computed), Medusa's own figure for an
order, and checks of mapped bodies."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from tests.integration.dixis_helpers import money

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "medusa"

# Medusa's figure for what an order sold: its summary's current total plus the credit lines
# it deducted when it refunded (at the order's current version), as the mapping reads it.
MEDUSA_TOTAL = """
    SELECT o.id, o.display_id,
           coalesce((s.totals->'raw_current_order_total'->>'value')::numeric,
                    (s.totals->>'current_order_total')::numeric)
           + coalesce((s.totals->'raw_credit_line_total'->>'value')::numeric, 0) AS total
    FROM medusa."order" o
    JOIN medusa.order_summary s ON s.order_id = o.id AND s.version = o.version
"""

# Orders that end with an invoice in QuickBooks (as medusa_qbsync.keeps_invoice decides),
# in the company's currency (euros: the sample store's default currency).
INVOICED = """
    SELECT o.id FROM medusa."order" o
    WHERE medusa_qbsync.keeps_invoice(o) AND o.currency_code = 'eur'
"""


def load_checkout(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """Load the rows Medusa 2.21.2's checkout workflows wrote (tests/fixtures/medusa) and
    return the totals Medusa computed for those orders, by scenario name."""
    with conn.transaction():
        # Medusa's order_item and order_line_item reference each other; the data-only dump
        # loads with foreign-key triggers (and capture triggers) off
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute((FIXTURES / "checkout.sql").read_text(encoding="utf-8"))  # type: ignore[arg-type]
    totals: dict[str, dict[str, Any]] = json.loads(
        (FIXTURES / "checkout-totals.json").read_text(encoding="utf-8"))
    return totals


def sold(order: dict[str, Any]) -> Decimal:
    """What Medusa says an order of the checkout fixture sold, to the cent: its total plus the
    credit lines its refunds added."""
    return money(Decimal(order["total"]) + Decimal(order["credit_line_total"]))


def assert_lines_add_up(body: dict[str, Any], total: Decimal) -> None:
    """Every line keeps QuickBooks' Amount = round(Qty x UnitPrice, 2) and the lines add up."""
    for line in body["Line"]:
        d = line["SalesItemLineDetail"]
        assert line["Amount"] == money(Decimal(d["Qty"]) * Decimal(d["UnitPrice"])), line
        assert Decimal(line["Amount"]).as_tuple().exponent >= -2, line  # cents, never more
    assert sum((line["Amount"] for line in body["Line"]), Decimal(0)) == total


def set_home_currency(conn: psycopg.Connection, code: str | None) -> None:
    if code is None:
        conn.execute("DELETE FROM medusa_qbsync.settings WHERE name = 'home_currency'")
    else:
        conn.execute("INSERT INTO medusa_qbsync.settings (name, value) VALUES ('home_currency', %s)"
                     " ON CONFLICT (name) DO UPDATE SET value = excluded.value", (code,))


def untrack(conn: psycopg.Connection) -> None:
    """The generator is a plain function; mapping tests load with capture off."""
    rows = conn.execute("SELECT tbl::text, entity FROM qbsync.tracked "
                        "WHERE tbl::text LIKE 'medusa.%%'").fetchall()
    for table, entity in rows:
        conn.execute("SELECT qbsync.untrack(%s, %s)", (table, entity))
