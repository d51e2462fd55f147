"""The push decision (qbsync.decide), one test per outcome, without a database or
QuickBooks: what the single path and the batch path both do with a row."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from qbsync.decide import (
    CURRENCY,
    MALFORMED,
    Create,
    Depend,
    Output,
    Update,
    Void,
    body_hash,
    creatable,
    decide,
    found_by,
    read,
    resolve,
    searchable,
    with_created,
)
from qbsync.model import UNCHANGED, EntityInfo, Mapped, PushFailed, Ref, Row, Skipped

REQUEST = uuid.UUID("00000000-0000-0000-0000-000000000001")
ENTITIES = {"order": "Invoice", "customer": "Customer", "product": "Item",
            "payment": "Payment", "refund": "CreditMemo", "receipt": "RefundReceipt"}


@dataclass
class Company:
    realm_id: str = "realm-1"
    settings: dict[str, Any] = field(default_factory=lambda: {"tax_code:24": "7"})
    custom_txn_numbers: bool = True
    # as realm.Realm reads them from the look-up (None: unknown)
    home_currency: str | None = None
    multicurrency: bool | None = None
    # settings `missing` does not report (one removed after the check)
    unseen: set[str] = field(default_factory=set)

    def missing(self, names: set[str]) -> list[str]:
        return sorted(n for n in names if n not in self.settings and n not in self.unseen)


def row(entity: str = "order", key: str = "1", **kw: Any) -> Row:
    return Row(1, entity, key, kw.pop("attempts", 1), REQUEST, **kw)


def info(entity: str = "order") -> EntityInfo:
    return EntityInfo(entity, ENTITIES[entity], 3, 120)


def plan(body: dict[str, Any] | None, known: dict[Ref, Mapped] | None = None, *,
         the_row: Row | None = None, company: Company | None = None,
         skip_invoiced: bool = True) -> Any:
    r = the_row or row()
    return decide(r, info(r.entity), read(body), known or {}, company or Company(),
                  ENTITIES, skip_invoiced=skip_invoiced)


def active(qbo_id: str, body_hash: str | None = None) -> Mapped:
    return Mapped(qbo_id, "3", "1001", "active", body_hash)


INVOICE = {"DocNumber": "1001", "CustomerRef": {"$ref": ["customer", "c1"]},
           "Line": [{"Amount": 10, "SalesItemLineDetail": {
               "ItemRef": {"$ref": ["product", "p1"]},
               "TaxCodeRef": {"$setting": "tax_code:24"}}}]}
RESOLVED = {("customer", "c1"): active("60"), ("product", "p1"): active("19")}


# -- nothing to send --------------------------------------------------------------------

def test_a_null_mapping_is_skipped() -> None:
    skipped = plan(None)
    assert skipped == Skipped("order 1: the mapping returned NULL (nothing to push)")


def test_an_order_with_its_invoice_is_skipped_unless_captured_retried_or_forced() -> None:
    known = {("order", "1"): active("130"), **RESOLVED}
    resync = row(origin="resync")
    skipped = plan(INVOICE, known, the_row=resync)
    assert isinstance(skipped, Skipped)
    assert skipped.reason == ("order 1 already has invoice 1001 (QuickBooks Id 130); resync "
                              "with force to push it again")
    assert isinstance(plan(INVOICE, known, the_row=row(origin="capture")), Update)
    # a dead row queued again by retry_dead was not skipped when it died
    assert isinstance(plan(INVOICE, known, the_row=row(origin="retry_dead")), Update)
    assert isinstance(plan(INVOICE, known, the_row=row(origin="resync", force=True)), Update)
    assert isinstance(plan(INVOICE, known, the_row=resync, skip_invoiced=False), Update)


def test_the_invoice_skip_comes_before_the_body_is_read() -> None:
    """As the single path always did: an invoiced order whose output is malformed or waits
    for a setting is skipped, not failed."""
    known = {("order", "1"): active("130")}
    resync = row(origin="resync")
    assert isinstance(plan({"Line": {"$ref": 5}}, known, the_row=resync), Skipped)
    waiting = {"TaxCodeRef": {"$setting": "tax_code:99"}}
    assert isinstance(plan(waiting, known, the_row=resync), Skipped)


def test_an_unchanged_body_is_skipped() -> None:
    body = {"DisplayName": "Ann", "PrimaryEmailAddr": {"Address": "a@example.com"}}
    known = {("customer", "c1"): active("60", body_hash("Customer", body))}
    skipped = plan(body, known, the_row=row("customer", "c1"))
    assert skipped == Skipped("customer c1: unchanged since its last push (QuickBooks Id 60); "
                              "nothing sent", UNCHANGED)


@pytest.mark.parametrize("the_row", [row("customer", "c1", force=True),
                                     row("customer", "c1", attempts=2),
                                     row("customer", "c1", outcome_unknown=True)],
                         ids=["forced", "a retry", "outcome unknown"])
def test_an_unchanged_body_is_sent_when_quickbooks_may_differ(the_row: Row) -> None:
    body = {"DisplayName": "Ann"}
    known = {("customer", "c1"): active("60", body_hash("Customer", body))}
    assert isinstance(plan(body, known, the_row=the_row), Update)


# -- voids and deletes ------------------------------------------------------------------

@pytest.mark.parametrize(("op", "done"), [("void", "voided"), ("delete", "deleted")])
def test_a_void_of_what_never_reached_quickbooks_is_skipped(op: str, done: str) -> None:
    assert plan({"$op": op}) == Skipped(f"order 1: nothing to {op}: it never reached QuickBooks")
    gone = {("order", "1"): Mapped("130", "4", "1001", done)}
    assert plan({"$op": op}, gone) == Skipped(f"order 1: Invoice 130 is already {done}")


@pytest.mark.parametrize("op", ["void", "delete"])
def test_a_void_of_a_linked_object(op: str) -> None:
    existing = active("130")
    voided = plan({"$op": op}, {("order", "1"): existing})
    assert voided == Void(op, existing, uuid.uuid5(REQUEST, f"{op}:130"))


def test_an_unknown_op_fails() -> None:
    failed = plan({"$op": "archive"})
    assert isinstance(failed, PushFailed)
    assert (failed.kind, failed.message) == (
        "permanent", "order 1: unknown \"$op\" 'archive' in mapping output")


# -- output that cannot be sent, settings that are missing ------------------------------

def test_malformed_output_fails_saying_where() -> None:
    failed = plan({"Line": [{"ItemRef": {"$ref": ["product"]}}]})
    assert isinstance(failed, PushFailed)
    assert (failed.kind, failed.code, failed.operation) == ("permanent", MALFORMED, "map")
    assert failed.message.startswith("order 1: mapping output at Line[0].ItemRef")


def test_a_reference_to_an_unknown_entity_fails_saying_where() -> None:
    failed = plan({"Line": [{"ItemRef": {"$ref": ["gift_card", "g1"]}}]})
    assert isinstance(failed, PushFailed)
    assert failed.code == MALFORMED
    assert failed.message == (
        'order 1: mapping output at Line[0].ItemRef: reference to unknown entity "gift_card" '
        "(not in qbsync.entities; register it with qbsync.define_entity)")


def test_a_missing_setting_makes_the_row_wait_before_anything_is_created() -> None:
    body = {**INVOICE, "TxnTaxDetail": {"TxnTaxCodeRef": {"$setting": "tax_code:0"}}}
    waiting = plan(body)  # its customer and item are not in QuickBooks either
    assert isinstance(waiting, PushFailed)
    assert (waiting.kind, waiting.operation) == ("setting", "wait.setting")
    assert waiting.details == {"settings": ["tax_code:0"]}
    assert waiting.message.startswith('order 1: waits for the QuickBooks setting "tax_code:0" '
                                      "(company realm-1 has no value for it)")


def test_a_setting_removed_after_the_check_waits_too_said_of_the_row() -> None:
    company = Company(settings={}, unseen={"tax_code:24"})
    waiting = resolve("order 1: its customer c1", read(INVOICE), RESOLVED, company, ENTITIES,
                      said_of="order 1")
    assert isinstance(waiting, PushFailed)
    assert waiting.kind == "setting"
    assert waiting.details == {"settings": ["tax_code:24"]}
    assert waiting.message.startswith("order 1: waits for")


# -- currencies -------------------------------------------------------------------------

USD_ONLY = Company(home_currency="USD", multicurrency=False)


@pytest.mark.parametrize("entity", ["order", "payment", "refund"])
def test_a_body_in_another_currency_than_a_single_currency_company_fails_at_once(
        entity: str) -> None:
    body = {**INVOICE, "CurrencyRef": {"value": "EUR"}}
    failed = plan(body, RESOLVED, the_row=row(entity, "1"), company=USD_ONLY)
    assert isinstance(failed, PushFailed)
    assert (failed.kind, failed.code, failed.operation) == ("permanent", CURRENCY, "map")
    assert failed.message.startswith(
        f"{entity} 1: the body is in EUR (CurrencyRef) but QuickBooks company realm-1 keeps "
        "its books in USD and has multicurrency off: QuickBooks cannot book it, and nothing "
        "was sent. Map it in USD")
    assert "turn multicurrency on in QuickBooks" in failed.message
    assert failed.details == {"currency": "EUR", "home_currency": "USD"}


def test_the_currency_is_refused_before_any_dependency_is_pushed() -> None:
    body = {**INVOICE, "CurrencyRef": {"value": "EUR"}}
    failed = plan(body, {}, company=USD_ONLY)  # its customer and item are not pushed yet
    assert isinstance(failed, PushFailed)
    assert failed.code == CURRENCY


@pytest.mark.parametrize(("company", "currency"), [
    (USD_ONLY, "USD"), (USD_ONLY, "usd"),                  # its own currency
    (Company(home_currency="USD", multicurrency=True), "EUR"),  # QuickBooks decides
    (Company(home_currency=None, multicurrency=False), "EUR"),  # look-up refused: unknown
    (Company(home_currency="USD", multicurrency=None), "EUR"),  # preference unknown
], ids=["home", "home lower case", "multicurrency", "currency unknown",
        "multicurrency unknown"])
def test_a_currency_the_company_may_take_goes_through(company: Company, currency: str) -> None:
    body = {**INVOICE, "CurrencyRef": {"value": currency}}
    created = plan(body, RESOLVED, company=company)
    assert isinstance(created, Create)
    assert created.body["CurrencyRef"] == {"value": currency}  # sent as the mapping wrote it


def test_a_currency_given_as_a_setting_is_judged_by_its_value() -> None:
    body = {**INVOICE, "CurrencyRef": {"$setting": "currency:shop"}}
    settings = {"tax_code:24": "7", "currency:shop": {"value": "EUR"}}
    failed = plan(body, RESOLVED, company=Company(settings=settings, home_currency="USD",
                                                  multicurrency=False))
    assert isinstance(failed, PushFailed)
    assert failed.code == CURRENCY
    settings["currency:shop"] = {"value": "USD"}
    assert isinstance(plan(body, RESOLVED, company=Company(
        settings=settings, home_currency="USD", multicurrency=False)), Create)


@pytest.mark.parametrize("ref", ["EUR", {"value": ""}, {"value": 978}, {"name": "Euro"}])
def test_a_currency_ref_of_another_shape_is_malformed(ref: Any) -> None:
    failed = plan({**INVOICE, "CurrencyRef": ref}, RESOLVED, company=USD_ONLY)
    assert isinstance(failed, PushFailed)
    assert failed.code == MALFORMED
    assert failed.message == ('order 1: mapping output at CurrencyRef: CurrencyRef must be '
                              '{"value": "<ISO 4217 currency code>"}')


def test_a_dependency_in_another_currency_fails_with_it() -> None:
    customer = read({"DisplayName": "Ann", "CurrencyRef": {"value": "EUR"}})
    failed = resolve("order 1: its customer c1", customer, {}, USD_ONLY, ENTITIES,
                     said_of="order 1")
    assert isinstance(failed, PushFailed)
    assert failed.code == CURRENCY
    assert failed.message.startswith("order 1: its customer c1: the body is in EUR")


# -- references -------------------------------------------------------------------------

def test_references_without_an_active_object_are_pushed_first() -> None:
    deleted = {("customer", "c1"): Mapped("60", "2", None, "deleted")}
    assert plan(INVOICE, deleted) == Depend((("customer", "c1"), ("product", "p1")))
    assert plan(INVOICE, {("customer", "c1"): active("60")}) == Depend((("product", "p1"),))


def test_once_pushed_the_references_resolve() -> None:
    ids = {("customer", "c1"): "60", ("product", "p1"): "19"}
    created = plan(INVOICE, with_created({}, ids))
    assert isinstance(created, Create)
    assert created.body == {"DocNumber": "1001", "CustomerRef": {"value": "60"},
                            "Line": [{"Amount": 10, "SalesItemLineDetail": {
                                "ItemRef": {"value": "19"}, "TaxCodeRef": "7"}}]}


# -- what to send -----------------------------------------------------------------------

def test_a_linked_object_is_updated_under_a_requestid_per_body() -> None:
    existing = active("130", "b1:old")
    updated = plan(INVOICE, {("order", "1"): existing, **RESOLVED})
    assert isinstance(updated, Update)
    assert updated.existing == existing
    assert updated.hashed == body_hash("Invoice", updated.body)
    assert updated.request_id == uuid.uuid5(REQUEST, f"update:130:{updated.hashed}")
    assert updated.body["CustomerRef"] == {"value": "60"}


def test_an_object_voided_in_quickbooks_is_created_again() -> None:
    created = plan(INVOICE, {("order", "1"): Mapped("130", "4", "1001", "voided"), **RESOLVED})
    assert isinstance(created, Create)


def test_a_create_is_looked_up_first_when_an_earlier_attempt_may_have_made_it() -> None:
    first = plan(INVOICE, RESOLVED)
    again = plan(INVOICE, RESOLVED, the_row=row(attempts=2))
    unknown = plan(INVOICE, RESOLVED, the_row=row(outcome_unknown=True))
    assert isinstance(first, Create)
    assert not first.look_up
    assert isinstance(again, Create)
    assert again.look_up
    assert isinstance(unknown, Create)
    assert unknown.look_up
    assert first.request_id == uuid.uuid5(REQUEST, f"create:{first.hashed}")


@pytest.mark.parametrize(("entity", "body", "custom", "by"), [
    ("customer", {"DisplayName": "Ann"}, True, "DisplayName"),
    ("customer", {"GivenName": "Ann"}, True, None),
    ("product", {"Name": "Tea"}, True, "Name"),
    ("order", {"DocNumber": "1001"}, True, "DocNumber"),
    ("order", {"DocNumber": "1001"}, False, "PrivateNote"),
    ("refund", {}, True, "PrivateNote"),
    ("receipt", {"DocNumber": "R-1"}, True, "DocNumber"),
    ("receipt", {"DocNumber": "R-1"}, False, "PrivateNote"),
    ("payment", {"TotalAmt": 10}, True, "PrivateNote"),
    ("payment", {"TotalAmt": 10, "DocNumber": "P-1"}, True, "PrivateNote"),
])
def test_how_an_earlier_create_is_found(entity: str, body: dict[str, Any], custom: bool,
                                        by: str | None) -> None:
    created = plan(body, the_row=row(entity, "k", attempts=2),
                   company=Company(custom_txn_numbers=custom))
    assert isinstance(created, Create)
    assert created.found_by == by == found_by(ENTITIES[entity], body, custom)


@pytest.mark.parametrize(("entity", "body", "other"), [
    # a changed body after retry_dead: a new requestid, never the first body's replay (nor
    # its refusal); an earlier create is found by the lookup, not by the replay
    ("payment", {"TotalAmt": 10}, {"TotalAmt": 12}),
    ("receipt", {"DocNumber": "R-1"}, {"DocNumber": "R-1", "PrivateNote": "fixed"}),
    ("customer", {"GivenName": "Ann"}, {"GivenName": "Anna"}),  # nothing to look it up by
])
def test_every_create_gets_a_requestid_per_body(entity: str, body: dict[str, Any],
                                                other: dict[str, Any]) -> None:
    the_row = row(entity, "p1", outcome_unknown=True)
    one, again, changed = (plan(b, the_row=the_row) for b in (body, dict(body), other))
    assert isinstance(one, Create)
    assert isinstance(again, Create)
    assert isinstance(changed, Create)
    assert one.request_id == again.request_id == uuid.uuid5(REQUEST, f"create:{one.hashed}")
    assert changed.request_id == uuid.uuid5(REQUEST, f"create:{changed.hashed}")
    assert changed.request_id != one.request_id


def test_a_payment_whose_outcome_is_unknown_is_looked_up_by_its_marker() -> None:
    unknown = plan({"TotalAmt": 10, "CustomerRef": {"$ref": ["customer", "c1"]}},
                   {("customer", "c1"): active("60")},
                   the_row=row("payment", "p1", outcome_unknown=True))
    assert isinstance(unknown, Create)
    assert (unknown.look_up, unknown.found_by) == (True, "PrivateNote")
    assert searchable("Payment", {"TotalAmt": 10})
    assert not searchable("Customer", {"GivenName": "Ann"})


def test_a_sales_form_is_created_with_the_marker_and_numbered_as_the_company_does() -> None:
    body = {"DocNumber": "1001", "PrivateNote": "gift"}
    assert creatable("order", "1", "Invoice", body, True) == {
        "DocNumber": "1001", "PrivateNote": "gift qbsync:order:1;"}
    assert creatable("order", "1", "Invoice", body, False) == {
        "PrivateNote": "gift qbsync:order:1;"}
    assert creatable("customer", "c1", "Customer", {"DisplayName": "Ann"}, False) == {
        "DisplayName": "Ann"}
    assert creatable("receipt", "9", "RefundReceipt", {"DocNumber": "R-1"}, False) == {
        "PrivateNote": "qbsync:receipt:9;"}


def test_a_payment_is_created_with_the_marker() -> None:
    body = {"TotalAmt": 10, "PrivateNote": "card ch_1"}
    assert creatable("payment", "7", "Payment", body, True) == {
        "TotalAmt": 10, "PrivateNote": "card ch_1 qbsync:payment:7;"}
    assert creatable("payment", "7", "Payment", {"TotalAmt": 10}, False) == {
        "TotalAmt": 10, "PrivateNote": "qbsync:payment:7;"}
    assert body == {"TotalAmt": 10, "PrivateNote": "card ch_1"}  # not changed in place


# -- reading the output -----------------------------------------------------------------

def test_reading_the_output_leaves_the_body_alone() -> None:
    body = {"$op": "upsert", "CustomerRef": {"$ref": ["customer", "c1"]}}
    output = read(body)
    assert output == Output(body, "upsert", frozenset({("customer", "c1")}), frozenset())
    assert body == {"$op": "upsert", "CustomerRef": {"$ref": ["customer", "c1"]}}
    assert read({"$op": "void", "Line": {"$ref": 5}}) == Output(
        {"$op": "void", "Line": {"$ref": 5}}, "void")  # not walked: nothing is sent
