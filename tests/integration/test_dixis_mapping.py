"""Dixis mapping functions (qbsync_map.customer / product / "order"): the QuickBooks bodies
for normal and awkward rows, QB001 refusals for bad data, _keys() and _outcome()."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.integration.dixis_helpers import (
    customer,
    mapped,
    money,
    order,
    product,
    refused,
    utf16_len,
)


def item_lines(invoice: dict[str, Any]) -> list[dict[str, Any]]:
    return [line for line in invoice["Line"] if line["DetailType"] == "SalesItemLineDetail"]


def detail(line: dict[str, Any]) -> dict[str, Any]:
    return line["SalesItemLineDetail"]


def assert_invoice_arithmetic(invoice: dict[str, Any], total: Decimal) -> None:
    """What QuickBooks checks (6070) and what the shop expects (the total)."""
    for line in invoice["Line"]:
        d = detail(line)
        assert line["Amount"] == money(Decimal(d["Qty"]) * Decimal(d["UnitPrice"])), line
    assert sum(line["Amount"] for line in invoice["Line"]) == total


# -- a normal order ---------------------------------------------------------------------


def test_completed_order_maps_to_a_tax_inclusive_invoice(dixis_db: psycopg.Connection) -> None:
    c = customer(dixis_db, "Γιώργος", "Παπαδόπουλος", email="G.Papadopoulos@Example.gr")
    oil = product(dixis_db, "Ελαιόλαδο Κορωνέικη 1L", "13.50", vat=13)
    wine = product(dixis_db, "Ασύρτικο Σαντορίνης 750ml", "18.90", vat=24)
    o = order(dixis_db, [(oil, "2", "13.50"), (wine, "1", "18.90")], customer_id=c,
              shipping="4.90", created_at="2026-03-14 12:00+02")

    inv = mapped(dixis_db, "order", o)
    assert inv is not None
    assert inv["CustomerRef"] == {"$ref": ["customer", str(c)]}
    assert inv["DocNumber"] == f"DX-2026-{o:06d}"
    assert inv["TxnDate"] == "2026-03-16"  # completed two days later, Athens date
    assert inv["GlobalTaxCalculation"] == "TaxInclusive"
    assert inv["BillEmail"] == {"Address": "G.Papadopoulos@Example.gr"}
    assert inv["BillAddr"] == {"Line1": "Οδός Ερμού 12", "City": "Αθήνα",
                               "PostalCode": "10563", "Country": "GR"}
    assert f"Dixis order id {o} " in inv["PrivateNote"]
    assert "CurrencyRef" not in inv
    lines = inv["Line"]
    assert [line["LineNum"] for line in lines] == [1, 2, 3]
    assert lines[0]["Description"] == "Ελαιόλαδο Κορωνέικη 1L"
    assert detail(lines[0]) == {
        "ItemRef": {"$ref": ["product", str(oil)]}, "Qty": 2, "UnitPrice": Decimal("13.50"),
        "TaxCodeRef": {"$setting": "tax_code:13"}}
    assert lines[0]["Amount"] == Decimal("27.00")
    assert detail(lines[1])["TaxCodeRef"] == {"$setting": "tax_code:24"}
    assert detail(lines[2])["ItemRef"] == {"$ref": ["product", "fee:shipping"]}
    assert lines[2]["Description"] == "Μεταφορικά"
    assert_invoice_arithmetic(inv, Decimal("50.80"))


def test_three_vat_rates_give_three_tax_codes(dixis_db: psycopg.Connection) -> None:
    c = customer(dixis_db)
    honey = product(dixis_db, "Μέλι Θυμαρίσιο 450g", "11.50", vat=13)
    soap = product(dixis_db, "Σαπούνι Ελαιολάδου", "3.50", vat=24)
    book = product(dixis_db, "Βιβλίο Μαγειρικής", "19.90", vat=6)
    gift = product(dixis_db, "Σετ Δώρου", "29.00", vat=13, vat_override=24)
    o = order(dixis_db, [(honey, "1", "11.50"), (soap, "3", "3.50"), (book, "1", "19.90"),
                         (gift, "1", "29.00")], customer_id=c)
    inv = mapped(dixis_db, "order", o)
    assert inv is not None
    codes = [detail(line)["TaxCodeRef"]["$setting"] for line in item_lines(inv)]
    assert codes == ["tax_code:13", "tax_code:24", "tax_code:6", "tax_code:24"]
    # the VAT rate snapshot on the line wins over today's catalogue
    dixis_db.execute("UPDATE dixis.order_items SET vat_rate = 13 WHERE product_id = %s", (soap,))
    inv = mapped(dixis_db, "order", o)
    assert inv is not None
    assert detail(inv["Line"][1])["TaxCodeRef"] == {"$setting": "tax_code:13"}


def test_fractional_quantities_round_like_quickbooks(dixis_db: psycopg.Connection) -> None:
    feta = product(dixis_db, "Φέτα ΠΟΠ", "12.99")
    o = order(dixis_db, [(feta, "0.750", "12.99"), (feta, "1.333", "7.77")],
              customer_id=customer(dixis_db))
    inv = mapped(dixis_db, "order", o)
    assert inv is not None
    assert [line["Amount"] for line in inv["Line"]] == [Decimal("9.74"), Decimal("10.36")]
    assert detail(inv["Line"][0])["Qty"] == Decimal("0.75")
    assert_invoice_arithmetic(inv, Decimal("20.10"))


def test_discounts_are_negative_lines_per_vat_rate(dixis_db: psycopg.Connection) -> None:
    oil = product(dixis_db, "Ελαιόλαδο 5L", "58.00", vat=13)
    wine = product(dixis_db, "Τσίπουρο 700ml", "16.50", vat=24)
    book = product(dixis_db, "Βιβλίο", "10.00", vat=6)
    # a line discount on the oil, and a 10.00 coupon over 13 % / 24 % / 6 % lines
    o = order(dixis_db, [(oil, "1", "58.00"), (wine, "2", "16.50"), (book, "1", "10.00")],
              line_discounts=["5.80", "0", "0"], discount="10.00", coupon="ΚΑΛΟΚΑΙΡΙ10",
              customer_id=customer(dixis_db), payment_fee="2.00")
    inv = mapped(dixis_db, "order", o)
    assert inv is not None
    kinds = [(detail(line)["ItemRef"]["$ref"][1], line["Amount"]) for line in inv["Line"]]
    assert kinds[:4] == [(str(oil), Decimal("58.00")), ("fee:discount", Decimal("-5.80")),
                         (str(wine), Decimal("33.00")), (str(book), Decimal("10.00"))]
    assert detail(inv["Line"][1])["TaxCodeRef"] == {"$setting": "tax_code:13"}
    assert inv["Line"][1]["Description"] == "Έκπτωση: Ελαιόλαδο 5L"
    coupon = [line for line in inv["Line"][4:] if "κουπονιού" in line["Description"]]
    # bases 52.20 / 33.00 / 10.00 of 95.20 -> 5.483 / 3.466 / 1.050 -> 5.48 + 3.47 + 1.05
    assert {detail(line)["TaxCodeRef"]["$setting"]: line["Amount"] for line in coupon} == {
        "tax_code:13": Decimal("-5.48"), "tax_code:24": Decimal("-3.47"),
        "tax_code:6": Decimal("-1.05")}
    assert "ΚΑΛΟΚΑΙΡΙ10" in coupon[0]["Description"]
    assert inv["Line"][-1]["Description"] == "Αντικαταβολή"
    assert_invoice_arithmetic(inv, Decimal("87.20"))


def test_zero_priced_lines_are_kept(dixis_db: psycopg.Connection) -> None:
    sample = product(dixis_db, "Δείγμα Μελιού 30g", "0", vat=24)
    honey = product(dixis_db, "Μέλι", "9.00")
    o = order(dixis_db, [(honey, "1", "9.00"), (sample, "2", "0")],
              customer_id=customer(dixis_db))
    inv = mapped(dixis_db, "order", o)
    assert inv is not None
    assert inv["Line"][1]["Amount"] == 0
    assert detail(inv["Line"][1])["Qty"] == 2
    assert_invoice_arithmetic(inv, Decimal("9.00"))


def test_pending_paid_and_shipped_orders_are_not_pushed(dixis_db: psycopg.Connection) -> None:
    p = product(dixis_db)
    for status in ("pending", "paid", "shipped"):
        o = order(dixis_db, [(p, "1", "12.90")], customer_id=customer(dixis_db), status=status)
        assert mapped(dixis_db, "order", o) is None


@pytest.mark.parametrize("status", ["cancelled", "refunded"])
def test_cancelled_and_refunded_orders_void(dixis_db: psycopg.Connection, status: str) -> None:
    o = order(dixis_db, [(product(dixis_db), "1", "12.90")], customer_id=customer(dixis_db),
              status=status, created_at="2025-05-01 10:00+03")
    assert mapped(dixis_db, "order", o) == {"$op": "void", "DocNumber": f"DX-2025-{o:06d}"}


def test_missing_rows_map_to_null(dixis_db: psycopg.Connection) -> None:
    for entity in ("order", "customer", "product"):
        assert mapped(dixis_db, entity, "987654") is None
    assert mapped(dixis_db, "customer", "guest:nobody@example.gr") is None


# -- order numbers ----------------------------------------------------------------------


def test_order_number_fits_docnumber(dixis_db: psycopg.Connection) -> None:
    row = dixis_db.execute(
        "SELECT dixis.order_number(123, '2026-01-05 10:00+02'), "
        "dixis.order_number(9999999999999, now()), "
        "dixis.order_number(1, '2025-12-31 23:30+00'), "  # already 2026 in Athens
        "dixis.order_id('DX-2026-000123')").fetchone()
    assert row is not None
    assert row[0] == "DX-2026-000123"
    assert len(row[1]) == 21
    assert row[2] == "DX-2026-000001"
    assert row[3] == 123
    with pytest.raises(psycopg.errors.CheckViolation), dixis_db.transaction():
        dixis_db.execute("INSERT INTO dixis.orders (id) VALUES (10000000000000)")


# -- customers --------------------------------------------------------------------------


def test_customer_maps_greek_text(dixis_db: psycopg.Connection) -> None:
    c = customer(dixis_db, "Ελένη", "Παπαδοπούλου", email="eleni@example.gr",
                 company_name="Ταβέρνα Η Ωραία Ελένη", vat_number="123456789")
    assert mapped(dixis_db, "customer", c) == {
        "DisplayName": f"Ελένη Παπαδοπούλου (#{c})",
        "GivenName": "Ελένη", "FamilyName": "Παπαδοπούλου",
        "CompanyName": "Ταβέρνα Η Ωραία Ελένη",
        "PrimaryEmailAddr": {"Address": "eleni@example.gr"},
        "PrimaryPhone": {"FreeFormNumber": "+30 6912345678"},
        "BillAddr": {"Line1": "Οδός Ερμού 12", "City": "Αθήνα", "PostalCode": "10563",
                     "Country": "GR"},
        "Notes": "ΑΦΜ: 123456789",
        "Active": True,
    }


def test_same_names_get_distinct_display_names(dixis_db: psycopg.Connection) -> None:
    a, b = customer(dixis_db), customer(dixis_db)
    names = {mapped(dixis_db, "customer", k)["DisplayName"] for k in (a, b)}  # type: ignore[index]
    assert names == {f"Γιώργος Παπαδόπουλος (#{a})", f"Γιώργος Παπαδόπουλος (#{b})"}


def test_forbidden_characters_are_replaced(dixis_db: psycopg.Connection) -> None:
    c = customer(dixis_db, "Γιώργος:\tο Μέγας", "Παπα\nδόπουλος\r\n", email="bad-address")
    body = mapped(dixis_db, "customer", c)
    assert body is not None
    assert body["GivenName"] == "Γιώργος- ο Μέγας"
    assert body["FamilyName"] == "Παπα δόπουλος"
    assert body["DisplayName"] == f"Γιώργος- ο Μέγας Παπα δόπουλος (#{c})"
    assert "PrimaryEmailAddr" not in body  # QBO would refuse it; the customer still syncs


def test_long_names_are_truncated_to_qbo_limits(dixis_db: psycopg.Connection) -> None:
    c = customer(dixis_db, "Αλέξανδρος" * 30, "Παπαδόπουλος" * 50)
    body = mapped(dixis_db, "customer", c)
    assert body is not None
    assert len(body["GivenName"]) == 100
    assert body["GivenName"].startswith("Αλέξανδρος")
    assert len(body["FamilyName"]) == 100
    assert len(body["DisplayName"]) <= 500
    assert body["DisplayName"].endswith(f" (#{c})")


def test_emoji_survive_and_count_as_two_units(dixis_db: psycopg.Connection) -> None:
    c = customer(dixis_db, "Μαρία 🌿🍯", "Κ" * 97 + "🫒🫒")
    body = mapped(dixis_db, "customer", c)
    assert body is not None
    assert body["GivenName"] == "Μαρία 🌿🍯"
    assert utf16_len(body["FamilyName"]) <= 100
    # 97 + 2 fits; the second emoji would make 101 units, and half of one is not text
    assert body["FamilyName"] == "Κ" * 97 + "🫒"
    assert "🌿🍯" in body["DisplayName"]


def test_guest_order_bills_a_guest_customer(dixis_db: psycopg.Connection) -> None:
    p = product(dixis_db)
    guest = {"billing_first_name": "Νίκος", "billing_last_name": "Οικονόμου",
             "billing_email": "Nikos.O@Example.gr", "billing_address": "Τσιμισκή 40",
             "billing_city": "Θεσσαλονίκη", "billing_postcode": "54622"}
    first = order(dixis_db, [(p, "1", "12.90")], guest=guest)
    later = order(dixis_db, [(p, "1", "12.90")], guest={**guest, "billing_city": "Καβάλα"})
    key = "guest:nikos.o@example.gr"
    for o in (first, later):
        inv = mapped(dixis_db, "order", o)
        assert inv is not None
        assert inv["CustomerRef"] == {"$ref": ["customer", key]}
    body = mapped(dixis_db, "customer", key)
    assert body is not None
    assert body["DisplayName"] == "Νίκος Οικονόμου (nikos.o@example.gr)"
    assert body["BillAddr"]["City"] == "Καβάλα"  # the latest order wins
    assert body["PrimaryEmailAddr"] == {"Address": "Nikos.O@Example.gr"}
    keys = [r[0] for r in dixis_db.execute("SELECT qbsync_map.customer_keys()")]
    assert keys.count(key) == 1


def test_deleted_customer_falls_back_to_guest(dixis_db: psycopg.Connection) -> None:
    c = customer(dixis_db, email="left@example.gr")
    o = order(dixis_db, [(product(dixis_db), "1", "12.90")], customer_id=c)
    dixis_db.execute("DELETE FROM dixis.customers WHERE id = %s", (c,))
    assert mapped(dixis_db, "customer", c) is None
    inv = mapped(dixis_db, "order", o)
    assert inv is not None
    assert inv["CustomerRef"] == {"$ref": ["customer", "guest:left@example.gr"]}


# -- products ---------------------------------------------------------------------------


def test_product_maps_to_a_non_inventory_item(dixis_db: psycopg.Connection) -> None:
    p = product(dixis_db, "Μέλι Θυμαρίσιο 450g", "11.50", vat=13, sku="HON-0001")
    assert mapped(dixis_db, "product", p) == {
        "Type": "NonInventory", "Name": "Μέλι Θυμαρίσιο 450g (HON-0001)", "Sku": "HON-0001",
        "Description": "Μέλι Θυμαρίσιο 450g", "UnitPrice": Decimal("11.50"), "Taxable": True,
        "SalesTaxIncluded": True, "SalesTaxCodeRef": {"$setting": "tax_code:13"},
        "IncomeAccountRef": {"$setting": "income_account"}, "Active": True,
    }
    dixis_db.execute("UPDATE dixis.products SET active = false WHERE id = %s", (p,))
    assert mapped(dixis_db, "product", p)["Active"] is False  # type: ignore[index]


def test_item_names_are_clean_unique_and_short(dixis_db: psycopg.Connection) -> None:
    long_name = "Ελαιόλαδο: Κορωνέικη\tπρώτης\nποιότητας 🫒 " * 10
    p = product(dixis_db, long_name, sku="OIL-LONG-1")
    body = mapped(dixis_db, "product", p)
    assert body is not None
    assert utf16_len(body["Name"]) <= 100
    assert body["Name"].endswith(" (OIL-LONG-1)")
    assert not any(ch in body["Name"] for ch in ":\t\n")
    assert body["Name"].startswith("Ελαιόλαδο- Κορωνέικη πρώτης ποιότητας 🫒")


@pytest.mark.parametrize(("key", "name"), [("fee:shipping", "Μεταφορικά"),
                                           ("fee:cod", "Αντικαταβολή"),
                                           ("fee:discount", "Έκπτωση")])
def test_fee_items_are_services_at_24(dixis_db: psycopg.Connection, key: str, name: str) -> None:
    body = mapped(dixis_db, "product", key)
    assert body is not None
    assert body["Type"] == "Service"
    assert body["Name"] == name
    assert body["SalesTaxCodeRef"] == {"$setting": "tax_code:24"}
    assert body["IncomeAccountRef"] == {"$setting": "income_account"}


# -- bad data: QB001, naming the key and the reason ---------------------------------------


def drop_check(conn: psycopg.Connection, table: str, constraint: str) -> None:
    """Play a shop without this constraint: the mapping must not rely on it."""
    conn.execute(f"ALTER TABLE dixis.{table} DROP CONSTRAINT {constraint}")  # type: ignore[arg-type]


def test_negative_unit_price_is_refused(dixis_db: psycopg.Connection) -> None:
    drop_check(dixis_db, "order_items", "order_items_unit_price_check")
    drop_check(dixis_db, "order_items", "order_items_discount_check")
    o = order(dixis_db, [(product(dixis_db, "Φέτα"), "1", "5.00"),
                         (product(dixis_db, "Μέλι"), "1", "-2.00")],
              customer_id=customer(dixis_db))
    message = refused(dixis_db, "order", o)
    assert message.startswith(f"order {o} (DX-2026-{o:06d}): line 2 (Μέλι)")
    assert "negative unit price -2.00" in message


def test_nan_amount_is_refused(dixis_db: psycopg.Connection) -> None:
    drop_check(dixis_db, "order_items", "order_items_unit_price_check")
    o = order(dixis_db, [(product(dixis_db), "1", "5.00")], customer_id=customer(dixis_db))
    dixis_db.execute("ALTER TABLE dixis.order_items DROP CONSTRAINT order_items_line_total_check")
    dixis_db.execute("ALTER TABLE dixis.order_items DROP CONSTRAINT order_items_discount_check")
    dixis_db.execute("UPDATE dixis.order_items SET unit_price = 'NaN' WHERE order_id = %s", (o,))
    assert "NaN" in refused(dixis_db, "order", o)
    drop_check(dixis_db, "products", "products_price_check")
    p = product(dixis_db, price="NaN")
    assert refused(dixis_db, "product", p) == f"product {p}: invalid price NaN"


def test_negative_fee_and_wrong_total_are_refused(dixis_db: psycopg.Connection) -> None:
    drop_check(dixis_db, "orders", "orders_amounts_check")
    drop_check(dixis_db, "orders", "orders_total_check")
    o = order(dixis_db, [(product(dixis_db), "1", "5.00")], customer_id=customer(dixis_db),
              shipping="-4.90")
    assert refused(dixis_db, "order", o).endswith("negative shipping fee -4.90")
    dixis_db.execute("UPDATE dixis.orders SET shipping_fee = 0, total = 99 WHERE id = %s", (o,))
    assert "total 99.00 <> subtotal 5.00" in refused(dixis_db, "order", o)
    # subtotal that does not match the lines
    dixis_db.execute("UPDATE dixis.orders SET subtotal = 6, total = 6 WHERE id = %s", (o,))
    assert "the lines add up to 5.00 but the order total is 6.00" in refused(dixis_db, "order", o)


def test_order_without_lines_is_refused(dixis_db: psycopg.Connection) -> None:
    o = order(dixis_db, [], customer_id=customer(dixis_db), shipping="4.90")
    assert refused(dixis_db, "order", o) == f"order {o} (DX-2026-{o:06d}): the order has no lines"


def test_line_without_product_is_refused(dixis_db: psycopg.Connection) -> None:
    p = product(dixis_db, "Κρόκος Κοζάνης")
    o = order(dixis_db, [(p, "1", "9.90")], customer_id=customer(dixis_db))
    dixis_db.execute("DELETE FROM dixis.products WHERE id = %s", (p,))  # line keeps its name
    message = refused(dixis_db, "order", o)
    assert message == (f"order {o} (DX-2026-{o:06d}): line 1 (Κρόκος Κοζάνης): "
                       "no product (deleted from the catalogue?)")


def test_deleted_customer_without_email_is_refused(dixis_db: psycopg.Connection) -> None:
    c = customer(dixis_db)
    o = order(dixis_db, [(product(dixis_db), "1", "12.90")], customer_id=c)
    dixis_db.execute("UPDATE dixis.orders SET billing_email = NULL WHERE id = %s", (o,))
    dixis_db.execute("DELETE FROM dixis.customers WHERE id = %s", (c,))
    message = refused(dixis_db, "order", o)
    assert message.startswith(f"order {o} (DX-2026-{o:06d}): no customer")


def test_empty_names_are_refused(dixis_db: psycopg.Connection) -> None:
    c = customer(dixis_db, " \t", ":" * 0)
    assert refused(dixis_db, "customer", c) == (
        f"customer {c}: empty name (first and last name are blank)")
    p = product(dixis_db, "  \n ")
    assert refused(dixis_db, "product", p) == f"product {p}: empty name"
    guest = {"billing_first_name": "", "billing_last_name": " ",
             "billing_email": "anon@example.gr"}
    o = order(dixis_db, [(product(dixis_db), "1", "1.00")], guest=guest)
    assert refused(dixis_db, "order", o).endswith("the guest has an empty name")
    assert refused(dixis_db, "customer", "guest:anon@example.gr").startswith(
        "customer guest:anon@example.gr: empty name")


def test_malformed_keys_are_refused(dixis_db: psycopg.Connection) -> None:
    assert refused(dixis_db, "order", "DX-1") == "order DX-1: the key is not an order id"
    assert refused(dixis_db, "customer", "x").startswith("customer x: the key is neither")
    assert refused(dixis_db, "product", "fee:gift").startswith("product fee:gift: unknown fee")


# -- keys and outcomes ------------------------------------------------------------------


def test_keys_list_every_row(dixis_db: psycopg.Connection) -> None:
    c = customer(dixis_db)
    p = product(dixis_db)
    o1 = order(dixis_db, [(p, "1", "12.90")], customer_id=c)
    o2 = order(dixis_db, [(p, "1", "12.90")], status="pending",
               guest={"billing_first_name": "Άννα", "billing_email": "anna@example.gr"})

    def keys(entity: str) -> list[str]:
        query = f'SELECT k FROM qbsync_map."{entity}_keys"() k ORDER BY 1'
        return [r[0] for r in dixis_db.execute(query)]  # type: ignore[arg-type]

    assert keys("order") == sorted([str(o1), str(o2)])
    assert keys("customer") == sorted([str(c), "guest:anna@example.gr"])
    assert keys("product") == sorted([str(p), "fee:cod", "fee:discount", "fee:shipping"])


def order_sync_columns(conn: psycopg.Connection, o: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT quickbooks_invoice_id, quickbooks_invoice_number, quickbooks_realm_id, "
        "quickbooks_sync_status, quickbooks_synced_at, quickbooks_sync_error, "
        "quickbooks_last_sync_attempt FROM dixis.orders WHERE id = %s", (o,)).fetchone()
    assert row is not None
    return tuple(row)


def outcome(conn: psycopg.Connection, entity: str, key: str | int, **fields: Any) -> None:
    query = f'SELECT qbsync_map."{entity}_outcome"(%s, %s::jsonb)'
    conn.execute(query, (str(key), json.dumps(fields)))  # type: ignore[arg-type]


def test_order_outcomes_are_written_back(dixis_db: psycopg.Connection) -> None:
    o = order(dixis_db, [(product(dixis_db), "1", "12.90")], customer_id=customer(dixis_db))
    outcome(dixis_db, "order", o, realm_id="9130", status="failed", error="QuickBooks 6000",
            attempted_at="2026-03-16T10:00:00+00:00")
    row = order_sync_columns(dixis_db, o)
    assert row[0] is None
    assert row[2:4] == ("9130", "failed")
    assert row[4] is None
    assert row[5] == "QuickBooks 6000"
    assert row[6].isoformat() == "2026-03-16T10:00:00+00:00"

    outcome(dixis_db, "order", o, realm_id="9130", status="synced", qbo_id="145",
            doc_number=f"DX-2026-{o:06d}", attempted_at="2026-03-16T10:05:00+00:00",
            synced_at="2026-03-16T10:05:01+00:00")
    row = order_sync_columns(dixis_db, o)
    assert row[:4] == ("145", f"DX-2026-{o:06d}", "9130", "synced")
    assert row[4].isoformat() == "2026-03-16T10:05:01+00:00"
    assert row[5] is None

    outcome(dixis_db, "order", o, realm_id="9130", status="voided", qbo_id="145",
            synced_at="2026-03-20T09:00:00+00:00")
    row = order_sync_columns(dixis_db, o)
    assert row[0] == "145"
    assert row[3] == "voided"


def test_outcomes_of_a_group_are_those_of_each_row(dixis_db: psycopg.Connection) -> None:
    """<entity>_outcomes(keys, outcomes), which the daemon calls for a group of rows, writes
    exactly what <entity>_outcome writes for each (and skips keys with no shop row)."""
    p = product(dixis_db)
    orders = [order(dixis_db, [(p, "1", "12.90")], customer_id=customer(dixis_db))
              for _ in range(4)]
    outcomes = [
        {"realm_id": "9130", "status": "synced", "qbo_id": "145", "doc_number": "DX-1",
         "attempted_at": "2026-03-16T10:05:00+00:00", "synced_at": "2026-03-16T10:05:01+00:00"},
        {"realm_id": "9130", "status": "failed", "error": "QuickBooks 6000",
         "attempted_at": "2026-03-16T10:00:00+00:00"},
        {"realm_id": "9130", "status": "voided", "qbo_id": "146",
         "synced_at": "2026-03-20T09:00:00+00:00"},
        {"realm_id": "9130", "status": "deleted", "qbo_id": "147"},
    ]
    for o in orders[:2]:  # something to overwrite or keep
        outcome(dixis_db, "order", o, realm_id="1", status="synced", qbo_id="9", doc_number="D",
                error="old", synced_at="2026-01-01T00:00:00+00:00")
    before = [order_sync_columns(dixis_db, o) for o in orders]
    dixis_db.execute("SAVEPOINT one_by_one")
    for o, fields in zip(orders, outcomes, strict=True):
        outcome(dixis_db, "order", o, **fields)
    one_by_one = [order_sync_columns(dixis_db, o) for o in orders]
    dixis_db.execute("ROLLBACK TO SAVEPOINT one_by_one")
    assert [order_sync_columns(dixis_db, o) for o in orders] == before
    dixis_db.execute(
        "SELECT qbsync_map.order_outcomes(%s::text[], %s::jsonb[])",
        ([str(o) for o in orders] + ["guest:x", "abc"],
         [json.dumps(f) for f in outcomes] + ['{"status": "synced"}'] * 2))
    assert [order_sync_columns(dixis_db, o) for o in orders] == one_by_one
    c = customer(dixis_db)
    dixis_db.execute(
        "SELECT qbsync_map.customer_outcomes(%s::text[], %s::jsonb[]), "
        "qbsync_map.product_outcomes(%s::text[], %s::jsonb[])",
        ([str(c), "guest:anna@example.gr"], ['{"qbo_id": "58", "realm_id": "9130"}'] * 2,
         [str(p), "fee:shipping"], ['{"qbo_id": "12", "status": "synced"}'] * 2))
    assert dixis_db.execute(
        "SELECT quickbooks_customer_id, quickbooks_realm_id FROM dixis.customers WHERE id = %s",
        (c,)).fetchone() == ("58", "9130")
    assert dixis_db.execute(
        "SELECT quickbooks_item_id, quickbooks_synced_at IS NOT NULL FROM dixis.products "
        "WHERE id = %s", (p,)).fetchone() == ("12", True)


def test_customer_and_product_outcomes(dixis_db: psycopg.Connection) -> None:
    c, p = customer(dixis_db), product(dixis_db)
    outcome(dixis_db, "customer", c, realm_id="9130", status="synced", qbo_id="58",
            synced_at="2026-03-16T10:00:00+00:00")
    outcome(dixis_db, "product", p, realm_id="9130", status="synced", qbo_id="12")
    outcome(dixis_db, "customer", "guest:anna@example.gr", status="synced", qbo_id="59")
    outcome(dixis_db, "product", "fee:shipping", status="synced", qbo_id="13")
    outcome(dixis_db, "product", p, realm_id="9130", status="failed", error="boom")
    assert dixis_db.execute(
        "SELECT quickbooks_customer_id, quickbooks_realm_id FROM dixis.customers WHERE id = %s",
        (c,)).fetchone() == ("58", "9130")
    assert dixis_db.execute(
        "SELECT quickbooks_item_id FROM dixis.products WHERE id = %s", (p,)).fetchone() == ("12",)
