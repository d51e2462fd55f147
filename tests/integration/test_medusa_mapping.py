"""The Medusa mapping against rows Medusa 2.21.2 wrote itself (tests/fixtures/medusa, made by
sql/shops/medusa/build-schema.sh through Medusa's own checkout, capture, refund and cancel
workflows) and the totals Medusa computed for them: every invoice adds up to Medusa's total to
the cent, taxes per rate, promotions, guests, currencies, payments, refunds, write-back."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.integration.dixis_helpers import mapped, refused
from tests.integration.medusa_helpers import (
    assert_lines_add_up,
    load_checkout,
    set_home_currency,
    sold,
)

EURO_INVOICES = ("registered_two_rates", "guest_fixed_discount", "guest_again",
                 "partly_refunded", "canceled_paid", "completed")


@pytest.fixture
def checkout(medusa_db: psycopg.Connection) -> dict[str, dict[str, Any]]:
    return load_checkout(medusa_db)


def tax_codes(body: dict[str, Any]) -> list[tuple[str, str, Decimal]]:
    return [(line["SalesItemLineDetail"]["ItemRef"]["$ref"][1][:4],
             line["SalesItemLineDetail"]["TaxCodeRef"]["$setting"], line["Amount"])
            for line in body["Line"]]


def captures_of(conn: psycopg.Connection, order_id: str) -> list[str]:
    return [k for (k,) in conn.execute(
        "SELECT c.id FROM medusa.capture c JOIN medusa.payment p ON p.id = c.payment_id "
        "JOIN medusa.order_payment_collection opc ON opc.payment_collection_id = "
        "p.payment_collection_id WHERE opc.order_id = %s ORDER BY c.created_at", (order_id,))]


def refunds_of(conn: psycopg.Connection, order_id: str) -> list[str]:
    return [k for (k,) in conn.execute(
        "SELECT r.id FROM medusa.refund r JOIN medusa.payment p ON p.id = r.payment_id "
        "JOIN medusa.order_payment_collection opc ON opc.payment_collection_id = "
        "p.payment_collection_id WHERE opc.order_id = %s ORDER BY r.created_at", (order_id,))]


@pytest.mark.parametrize("name", EURO_INVOICES)
def test_every_invoice_adds_up_to_the_total_medusa_computed(
    medusa_db: psycopg.Connection, checkout: dict[str, dict[str, Any]], name: str
) -> None:
    order = checkout[name]
    body = mapped(medusa_db, "order", order["id"])
    assert body is not None
    assert "$op" not in body
    # Medusa's totals are not rounded (99.06515800225623): the invoice is them, to the cent
    assert_lines_add_up(body, sold(order))
    assert body["DocNumber"] == f"MED-{order['display_id']}"
    assert body["GlobalTaxCalculation"] == "TaxInclusive"
    assert body["CurrencyRef"] == {"value": "EUR"}  # the order's currency


def test_two_vat_rates_and_a_percentage_promotion(medusa_db: psycopg.Connection,
                                                  checkout: dict[str, dict[str, Any]]) -> None:
    body = mapped(medusa_db, "order", checkout["registered_two_rates"]["id"])
    assert body is not None
    # items (VAT-inclusive prices) each followed by its promotion, at the item's rate;
    # SUMMER10 is stored net of VAT (6.721008403361344): 10 % of 79.98 gross is 8.00
    assert tax_codes(body) == [
        ("vari", "tax_code:19", Decimal("79.98")), ("fee:", "tax_code:19", Decimal("-8.00")),
        ("vari", "tax_code:7", Decimal("24.90")), ("fee:", "tax_code:7", Decimal("-2.49")),
        ("fee:", "tax_code:19", Decimal("4.90"))]
    assert body["Line"][1]["Description"] == "Discount SUMMER10: Linen Shirt"
    shipping = body["Line"][4]["SalesItemLineDetail"]
    assert shipping["ItemRef"] == {"$ref": ["product", "fee:shipping"]}


def test_a_fixed_promotion_and_free_shipping(medusa_db: psycopg.Connection,
                                             checkout: dict[str, dict[str, Any]]) -> None:
    body = mapped(medusa_db, "order", checkout["guest_fixed_discount"]["id"])
    assert body is not None
    descriptions = [line["Description"] for line in body["Line"]]
    assert "Discount FIVEOFF: Olive Wood Spoon" in descriptions
    # Medusa's free shipping: the shipping line and a discount line that cancels it
    shipping = body["Line"][-2:]
    assert [line["Amount"] for line in shipping] == [Decimal("4.90"), Decimal("-4.90")]
    assert shipping[1]["Description"] == "Discount FREESHIP: Standard Shipping"
    assert {line["SalesItemLineDetail"]["TaxCodeRef"]["$setting"] for line in body["Line"]} == {
        "tax_code:20", "tax_code:5.5"}


def test_foreign_currency_is_refused_then_mapped_in_a_company_of_that_currency(
    medusa_db: psycopg.Connection, checkout: dict[str, dict[str, Any]]
) -> None:
    usd = checkout["usd_tax_exclusive"]
    message = refused(medusa_db, "order", usd["id"])
    assert f"order #{usd['display_id']} ({usd['id']})" in message
    assert "the order is in USD but the QuickBooks company keeps its books in EUR" in message
    (capture,) = captures_of(medusa_db, usd["id"])
    assert "in USD" in refused(medusa_db, "payment", capture)
    set_home_currency(medusa_db, "usd")
    body = mapped(medusa_db, "order", usd["id"])
    assert body is not None
    # prices before sales tax (8.875 %) become VAT-inclusive lines: 3 x 44.50 x 1.08875
    assert body["Line"][0]["SalesItemLineDetail"]["UnitPrice"] == Decimal("48.44938")
    assert_lines_add_up(body, sold(usd))
    assert "in EUR" in refused(medusa_db, "order", checkout["completed"]["id"])


def company(conn: psycopg.Connection, home: str, multicurrency: bool | None) -> None:
    """A connected QuickBooks company whose preferences the daemon looked up."""
    conn.execute("INSERT INTO qbsync.connections (realm_id, api_base_url, company_name, "
                 "tokens, key_id) VALUES ('9130', 'http://qbo.emulator', 'Kyma', '\\x00', 'k1')")
    conn.execute("INSERT INTO qbsync.realm_settings (realm_id, name, value) VALUES "
                 "('9130', 'home_currency', %s)", (json.dumps({"value": home}),))
    if multicurrency is not None:
        conn.execute("INSERT INTO qbsync.realm_settings (realm_id, name, value) VALUES "
                     "('9130', 'multicurrency', %s)", (json.dumps(multicurrency),))


def test_the_company_currency_the_daemon_looked_up_comes_first(
    medusa_db: psycopg.Connection, checkout: dict[str, dict[str, Any]]
) -> None:
    """Once the daemon knows the company's currency, the mapping takes it over its own
    setting and the store's default. A company that keeps one currency: the body says the
    order's currency and the daemon refuses it (QB005), payments and refunds alike. A
    multicurrency company, or one whose preference is unknown: the mapping refuses it."""
    usd, eur = checkout["usd_tax_exclusive"], checkout["completed"]
    set_home_currency(medusa_db, "eur")   # the mapping's own guess, overridden below
    company(medusa_db, "USD", False)
    assert medusa_db.execute("SELECT medusa_qbsync.home_currency()").fetchone() == ("usd",)
    body = mapped(medusa_db, "order", usd["id"])
    assert body is not None
    assert body["CurrencyRef"] == {"value": "USD"}
    assert_lines_add_up(body, sold(usd))
    # a euro order goes out saying so: the daemon refuses it, naming both currencies
    body = mapped(medusa_db, "order", eur["id"])
    assert body is not None
    assert body["CurrencyRef"] == {"value": "EUR"}
    for capture in captures_of(medusa_db, eur["id"]):
        assert mapped(medusa_db, "payment", capture)["CurrencyRef"] == {"value": "EUR"}  # type: ignore[index]
    (refund,) = refunds_of(medusa_db, checkout["partly_refunded"]["id"])
    assert mapped(medusa_db, "refund", refund)["CurrencyRef"] == {"value": "EUR"}  # type: ignore[index]
    # items are priced in the company's currency
    variant = mapped(medusa_db, "order", usd["id"])["Line"][0][  # type: ignore[index]
        "SalesItemLineDetail"]["ItemRef"]["$ref"][1]
    assert mapped(medusa_db, "product", variant)["UnitPrice"] == Decimal("44.5")  # type: ignore[index]
    for multicurrency in (True, None):
        medusa_db.execute("DELETE FROM qbsync.realm_settings WHERE name = 'multicurrency'")
        if multicurrency is not None:
            medusa_db.execute("INSERT INTO qbsync.realm_settings (realm_id, name, value) "
                              "VALUES ('9130', 'multicurrency', 'true')")
        message = refused(medusa_db, "order", eur["id"])
        assert "the order is in EUR but the QuickBooks company keeps its books in USD" in message
        assert ("has multicurrency on" in message) == bool(multicurrency)
        (capture,) = captures_of(medusa_db, eur["id"])
        assert "in EUR" in refused(medusa_db, "payment", capture)


def test_canceled_before_capture_voids_the_invoice(medusa_db: psycopg.Connection,
                                                   checkout: dict[str, dict[str, Any]]) -> None:
    order = checkout["canceled_unpaid"]
    assert mapped(medusa_db, "order", order["id"]) == {
        "$op": "void", "DocNumber": f"MED-{order['display_id']}"}
    assert captures_of(medusa_db, order["id"]) == []


def test_captures_pay_the_invoice_to_the_cent(medusa_db: psycopg.Connection,
                                              checkout: dict[str, dict[str, Any]]) -> None:
    for name in ("registered_two_rates", "guest_fixed_discount", "partly_refunded",
                 "canceled_paid", "completed"):
        order = checkout[name]
        invoice = mapped(medusa_db, "order", order["id"])
        assert invoice is not None
        paid = Decimal(0)
        for capture in captures_of(medusa_db, order["id"]):
            body = mapped(medusa_db, "payment", capture)
            assert body is not None
            assert body["Line"] == [{"Amount": body["TotalAmt"], "LinkedTxn": [
                {"TxnId": {"$id": ["order", order["id"]]}, "TxnType": "Invoice"}]}]
            assert body["CustomerRef"] == invoice["CustomerRef"]
            assert body["PaymentMethodRef"] == {"$setting": "payment_method:pp_system_default"}
            paid += body["TotalAmt"]
        # Medusa captured 99.06515800225623: the payment closes the 99.07 invoice exactly
        assert paid == sold(order), name
    authorized_only = checkout["guest_again"]
    assert captures_of(medusa_db, authorized_only["id"]) == []


def test_refunds_are_receipts_that_add_up(medusa_db: psycopg.Connection,
                                          checkout: dict[str, dict[str, Any]]) -> None:
    # a partial refund of an order with two VAT rates: split over the rates
    (partial,) = refunds_of(medusa_db, checkout["registered_two_rates"]["id"])
    body = mapped(medusa_db, "refund", partial)
    assert body is not None
    assert_lines_add_up(body, Decimal("12.50"))
    assert [line["SalesItemLineDetail"]["TaxCodeRef"]["$setting"] for line in body["Line"]] == [
        "tax_code:19", "tax_code:7"]
    assert body["DocNumber"] == f"MED-{checkout['registered_two_rates']['display_id']}-R1"
    # Medusa's refund reason and note
    (reasoned,) = refunds_of(medusa_db, checkout["partly_refunded"]["id"])
    body = mapped(medusa_db, "refund", reasoned)
    assert body is not None
    assert body["PrivateNote"].endswith(": Damaged in transit - Broken spoon")
    assert_lines_add_up(body, Decimal("10.00"))
    # a cancellation after capture refunds everything: the invoice's own lines
    canceled = checkout["canceled_paid"]
    (full,) = refunds_of(medusa_db, canceled["id"])
    body = mapped(medusa_db, "refund", full)
    invoice = mapped(medusa_db, "order", canceled["id"])
    assert body is not None
    assert invoice is not None
    assert body["Line"] == invoice["Line"]
    fee = mapped(medusa_db, "product", "fee:refund")
    assert fee is not None
    assert fee["Type"] == "Service"


def test_guests_and_account_holders(medusa_db: psycopg.Connection,
                                    checkout: dict[str, dict[str, Any]]) -> None:
    guest = mapped(medusa_db, "order", checkout["guest_fixed_discount"]["id"])
    again = mapped(medusa_db, "order", checkout["guest_again"]["id"])
    assert guest is not None
    assert again is not None
    # Medusa reuses the guest's customer row for the same e-mail: one QuickBooks customer
    assert guest["CustomerRef"] == again["CustomerRef"]
    customer = mapped(medusa_db, "customer", guest["CustomerRef"]["$ref"][1])
    assert customer is not None
    # a guest row has only the e-mail: the name comes from the latest order's address
    assert customer["DisplayName"] == "Jean Dupont (jean.dupont@example.fr, guest)"
    assert customer["GivenName"] == "Jean"
    account = mapped(medusa_db, "order", checkout["completed"]["id"])
    assert account is not None
    holder = mapped(medusa_db, "customer", account["CustomerRef"]["$ref"][1])
    assert holder is not None
    assert holder["DisplayName"] == "Anna Schmidt (anna.schmidt@example.de)"
    assert holder["CompanyName"] == "Schmidt GmbH"
    greek = mapped(medusa_db, "order", checkout["canceled_paid"]["id"])
    assert greek is not None
    assert mapped(medusa_db, "customer", greek["CustomerRef"]["$ref"][1])["DisplayName"] == (  # type: ignore[index]
        "Μαρία Παπαδοπούλου (maria.p@example.gr, guest)")


def test_variants_are_items(medusa_db: psycopg.Connection,
                            checkout: dict[str, dict[str, Any]]) -> None:
    body = mapped(medusa_db, "order", checkout["completed"]["id"])
    assert body is not None
    variant = body["Line"][0]["SalesItemLineDetail"]["ItemRef"]["$ref"][1]
    item = mapped(medusa_db, "product", variant)
    assert item == {
        # ':' is QuickBooks' sub-item separator, never part of a name
        "Type": "NonInventory", "Name": "Cookbook- Aegean Kitchen - Hardcover (BOOK-AEGEAN)",
        "Sku": "BOOK-AEGEAN", "Description": "Cookbook: Aegean Kitchen - Hardcover",
        "UnitPrice": Decimal("24.9"), "Taxable": True, "SalesTaxIncluded": True,
        "IncomeAccountRef": {"$setting": "income_account"}, "Active": True}
    keys = {k for (k,) in medusa_db.execute("SELECT qbsync_map.product_keys()")}
    assert {"fee:shipping", "fee:discount"} <= keys
    assert len(keys) == 4 + 2


def test_outcomes_go_to_the_side_table_and_leave_medusa_rows_alone(
    medusa_db: psycopg.Connection, checkout: dict[str, dict[str, Any]]
) -> None:
    order_id = checkout["completed"]["id"]
    before = medusa_db.execute('SELECT o::text FROM medusa."order" o WHERE o.id = %s',
                               (order_id,)).fetchone()
    medusa_db.execute("SELECT qbsync_map.order_outcome(%s, %s)", (order_id, (
        '{"status": "failed", "error": "QuickBooks 6000", '
        '"attempted_at": "2026-03-14T10:00:00Z"}')))
    medusa_db.execute("SELECT qbsync_map.order_outcomes(%s, %s::jsonb[])", ([order_id], [
        '{"status": "synced", "qbo_id": "17", "doc_number": "MED-8", "realm_id": "9341"}']))
    assert medusa_db.execute(
        "SELECT qbo_id, doc_number, status, error, realm_id, attempted_at IS NOT NULL, "
        "synced_at IS NOT NULL FROM medusa_qbsync.sync_state WHERE entity = 'order' AND key = %s",
        (order_id,)).fetchone() == ("17", "MED-8", "synced", None, "9341", True, True)
    after = medusa_db.execute('SELECT o::text FROM medusa."order" o WHERE o.id = %s',
                              (order_id,)).fetchone()
    assert after == before
    medusa_db.execute("SELECT qbsync_map.order_outcome(%s, '{\"status\": \"deleted\"}')",
                      (order_id,))
    assert medusa_db.execute("SELECT qbo_id, status FROM medusa_qbsync.sync_state "
                             "WHERE key = %s", (order_id,)).fetchone() == (None, "deleted")


def test_rows_qb_would_refuse_are_refused_with_their_reason(
    medusa_db: psycopg.Connection, checkout: dict[str, dict[str, Any]]
) -> None:
    order = checkout["completed"]
    label = f"order #{order['display_id']} ({order['id']})"
    # a line Medusa's summary does not know (a version mixed up, a row lost)
    medusa_db.execute("UPDATE medusa.order_line_item SET unit_price = unit_price + 1 WHERE id = "
                      "(SELECT item_id FROM medusa.order_item WHERE order_id = %s LIMIT 1)",
                      (order["id"],))
    assert refused(medusa_db, "order", order["id"]) == (
        f"{label}: the lines add up to 30.800000 but Medusa's order summary says 29.800000")
    medusa_db.execute("UPDATE medusa.order_item SET deleted_at = now() WHERE order_id = %s",
                      (order["id"],))
    medusa_db.execute("UPDATE medusa.order_shipping SET deleted_at = now() WHERE order_id = %s",
                      (order["id"],))
    assert refused(medusa_db, "order", order["id"]) == f"{label}: the order has no lines"
    other = checkout["guest_again"]
    medusa_db.execute("UPDATE medusa.\"order\" SET custom_display_id = %s WHERE id = %s",
                      ("WEB-2026-EUROPE-000000003", other["id"]))
    assert "order number WEB-2026-EUROPE-000000003 is longer than QuickBooks' 21 characters" in (
        refused(medusa_db, "order", other["id"]))
    medusa_db.execute("UPDATE medusa.\"order\" SET custom_display_id = NULL, "
                      "customer_id = 'cus_gone' WHERE id = %s", (other["id"],))
    assert refused(medusa_db, "order", other["id"]).endswith("customer cus_gone does not exist")
    # capturing more than the invoice (an order edited down after its capture)
    paid = checkout["partly_refunded"]
    (capture,) = captures_of(medusa_db, paid["id"])
    medusa_db.execute("UPDATE medusa.capture SET amount = 60 WHERE id = %s", (capture,))
    assert refused(medusa_db, "payment", capture).endswith(
        "60.00 captured in all, more than the invoice total 51.55")
