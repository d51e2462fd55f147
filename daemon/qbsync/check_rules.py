"""What QuickBooks enforces on a body, checked without QuickBooks: the rules `qbsync
check-mapping` applies to each mapped body (`check_body`) and across the bodies it mapped
(`duplicate_doc_numbers`). Pure functions over the parsed body; the database side (keys,
references, settings, capture rules) is `qbsync.check_mapping`.

Facts from Intuit's QuickBooks Online API reference (developer.intuit.com/app/developer/qbo/
docs/api/accounting/all-entities/: customer, item, invoice, payment, refundreceipt, taxcode)
and the answers captured in tests/fixtures/qbo (the emulator is tested against them):
required fields per type, lengths (counted in UTF-16 units, as QuickBooks counts them: an
emoji counts two), the characters names cannot hold, `Amount = round(Qty × UnitPrice, 2)`
(6070), tax codes per company model (a code on every sales line of a VAT company, TAX or NON
on a US one), money in cents, a CurrencyRef the company takes.

A finding is an error (QuickBooks would refuse the body, or qbsync would fail the row), a
warning (it goes through, probably not as meant) or info (what a missing optional part
costs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

ERROR, WARNING, INFO = "error", "warning", "info"
LEVELS = (ERROR, WARNING, INFO)

# One name per kind of check (the report groups by it; each has its own test)
RULES = {
    "function": "the mapping functions exist with the signatures qbsync calls",
    "keys": "the keys asked for are keys of the entity",
    "map_error": "the mapping function ran without an error",
    "refused": "the mapping refused the key (QB001): the row would go dead with its message",
    "malformed": "the output is what the daemon reads (JSON object, references, numbers)",
    "required": "the fields QuickBooks requires for the type",
    "length": "lengths QuickBooks takes",
    "characters": "characters QuickBooks refuses in names",
    "email": "e-mail addresses QuickBooks takes",
    "line_amount": "Line Amount = round(Qty x UnitPrice, 2) (QuickBooks error 6070)",
    "totals": "lines that add up (subtotals, discounts, TotalAmt, the shop's ledger)",
    "tax_code": "a tax code on every sales line (VAT), TAX or NON (US)",
    "doc_number": "DocNumber unique per QuickBooks type",
    "money": "money finite and in cents",
    "reference": "references name registered entities and keys they know",
    "setting": "settings the company resolves",
    "currency": "a CurrencyRef is {\"value\": code}, and the company's own currency when it "
                "has multicurrency off",
    "capture": "capture rules cover the columns the mapping reads",
}

# The QuickBooks types a mapping pushes (qbsync.entities.qbo_type)
SALES_TYPES = frozenset({"Invoice", "CreditMemo", "RefundReceipt", "SalesReceipt"})

# Counted in UTF-16 units, as QuickBooks counts them (Intuit's API reference, per entity)
_ADDRESS = {"Line1": 500, "Line2": 500, "Line3": 500, "Line4": 500, "Line5": 500,
            "City": 255, "Country": 255, "CountrySubDivisionCode": 255, "PostalCode": 30}
LIMITS: dict[str, dict[str, int]] = {
    "Customer": {"DisplayName": 500, "Title": 16, "Suffix": 16, "GivenName": 100,
                 "MiddleName": 100, "FamilyName": 100, "CompanyName": 100,
                 "PrintOnCheckName": 110, "Notes": 2000,
                 "PrimaryPhone.FreeFormNumber": 30, "AlternatePhone.FreeFormNumber": 30,
                 "Mobile.FreeFormNumber": 30, "Fax.FreeFormNumber": 30,
                 **{f"BillAddr.{k}": n for k, n in _ADDRESS.items()},
                 **{f"ShipAddr.{k}": n for k, n in _ADDRESS.items()}},
    "Item": {"Name": 100, "Sku": 100, "Description": 4000, "PurchaseDesc": 4000},
    "Payment": {"PaymentRefNum": 21, "PrivateNote": 4000},
}
for _type in SALES_TYPES:
    LIMITS[_type] = {"DocNumber": 21, "PrivateNote": 4000, "CustomerMemo.value": 1000,
                     "Line[].Description": 4000, "PaymentRefNum": 21,
                     **{f"BillAddr.{k}": n for k, n in _ADDRESS.items()},
                     **{f"ShipAddr.{k}": n for k, n in _ADDRESS.items()}}
MAX_LINES = 750  # taxable invoices (Intuit's API reference, Invoice: Line)

# Names QuickBooks refuses ':' / TAB / newline in (Intuit's API reference, Customer
# DisplayName and the name parts, Item Name)
NAME_FIELDS = {
    "Customer": ("DisplayName", "Title", "GivenName", "MiddleName", "FamilyName", "Suffix",
                 "PrintOnCheckName"),
    "Item": ("Name",),
}
FORBIDDEN = {":": "':'", "\t": "TAB", "\n": "newline", "\r": "carriage return"}
EMAILS = {"Customer": ("PrimaryEmailAddr.Address",),
          **{t: ("BillEmail.Address",) for t in SALES_TYPES}}
CUSTOMER_NAME_PARTS = ("DisplayName", "Title", "GivenName", "MiddleName", "FamilyName",
                       "Suffix")
ITEM_TYPES = ("Inventory", "NonInventory", "Service")
ITEM_NEEDS = {"Service": ("IncomeAccountRef",), "NonInventory": ("IncomeAccountRef",),
              "Inventory": ("IncomeAccountRef", "AssetAccountRef", "QtyOnHand",
                            "InvStartDate")}
# Money: cents. Quantities and prices: QuickBooks keeps 5 decimals (10.5 format).
MONEY_FIELDS = frozenset({"Amount", "TotalAmt", "Balance", "Deposit", "TotalTax", "TaxAmount",
                          "DiscountAmount", "UnappliedAmt", "NetAmountTaxable",
                          "TaxInclusiveAmount"})
FINE_FIELDS = frozenset({"Qty", "UnitPrice"})
CENT = Decimal("0.01")
US_CODES = ("TAX", "NON")
# A tax code setting as qbsync looks it up: tax_code:<rate> without trailing zeros
TAX_RATE_SETTING = re.compile(r"^tax_code:(-?[0-9]+(?:\.[0-9]+)?)$")


@dataclass(frozen=True)
class Finding:
    rule: str
    level: str
    message: str
    path: str = ""

    def as_json(self) -> dict[str, str]:
        return {"rule": self.rule, "level": self.level, "path": self.path,
                "message": self.message}


@dataclass(frozen=True)
class TaxContext:
    """What the tax-code rule needs to know of the company: its model ("vat", "us" or None
    when unknown), and how a setting name resolves (the company's settings, through
    qbsync.setting_aliases) — `codes`: setting name -> the tax code Id it resolves to, when
    a company is connected."""

    model: str | None = None
    aliases: dict[str, str] | None = None
    codes: dict[str, str] | None = None

    def us_code(self, ref: Any) -> str | None:
        """TAX or NON when a TaxCodeRef (a value or a {"$setting": …}) denotes one."""
        if isinstance(ref, dict) and "$setting" in ref:
            name = str(ref["$setting"])
            if self.codes is not None and name in self.codes:
                value = self.codes[name]
                return value if value in US_CODES else None
            target = (self.aliases or {}).get(name, name)
            code = target.partition(":")[2] if target.startswith("tax_code:") else ""
            return code if code in US_CODES else None
        value = ref.get("value") if isinstance(ref, dict) else ref
        return str(value) if str(value) in US_CODES else None


@dataclass(frozen=True)
class CompanyCurrency:
    """The connected company's currency as the daemon looked it up (settings home_currency
    and multicurrency); None where it is unknown."""

    home: str | None = None
    multicurrency: bool | None = None


def utf16_length(text: str) -> int:
    """QuickBooks counts string lengths in UTF-16 units: a character outside the BMP
    (an emoji) counts two."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def number(value: Any) -> Decimal | None:
    """A JSON number (or numeric string) as the decimal PostgreSQL wrote: a float parsed
    from at most 15 digits (what fastjson.loads_exact lets through) prints back as the
    same decimal. None when it is not a finite number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return Decimal(value)
    try:
        result = Decimal(repr(value) if isinstance(value, float) else str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def cents(value: Decimal) -> Decimal:
    """Rounded half away from zero to cents, as QuickBooks (and PostgreSQL's round) do."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def path_of(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def get(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def present(value: Any) -> bool:
    """What QuickBooks takes as sent (an empty string, object or list is not)."""
    return value is not None and value != "" and value != {} and value != []


def lines(body: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    found = body.get("Line")
    if not isinstance(found, list):
        return []
    return [(i, line) for i, line in enumerate(found) if isinstance(line, dict)]


def sales_lines(body: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(index, line, its SalesItemLineDetail) of the lines QuickBooks counts: a sales line
    without an ItemRef is text only and its Amount is ignored."""
    for i, line in lines(body):
        if line.get("DetailType") == "SalesItemLineDetail":
            detail = line.get("SalesItemLineDetail")
            yield i, line, detail if isinstance(detail, dict) else {}


# --- the rules ------------------------------------------------------------------------------

def check_body(qbo_type: str, body: dict[str, Any], tax: TaxContext,
               currency: CompanyCurrency | None = None) -> list[Finding]:
    """Every rule that looks at one body alone (a body collect() accepted; `$op` bodies —
    a void or a delete — carry nothing QuickBooks validates)."""
    if "$op" in body:
        return []
    found: list[Finding] = []
    found += required(qbo_type, body)
    found += lengths(qbo_type, body)
    found += characters(qbo_type, body)
    found += emails(qbo_type, body)
    found += line_amounts(qbo_type, body)
    found += totals(qbo_type, body)
    found += tax_codes(qbo_type, body, tax)
    found += money(body)
    found += reference_shapes(body)
    found += currencies(body, currency or CompanyCurrency())
    return found


def required(qbo_type: str, body: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []

    def need(field: str, why: str = "") -> None:
        if not present(get(body, field)):
            out.append(Finding("required", ERROR, f"{qbo_type} needs {field}{why} "
                               "(QuickBooks error 2020: required parameter missing)", field))

    if qbo_type == "Customer":
        if not any(present(body.get(f)) for f in CUSTOMER_NAME_PARTS):
            out.append(Finding("required", ERROR, "Customer needs DisplayName or a name part "
                               "(GivenName, FamilyName, ...): QuickBooks error 6080 'No name "
                               "provided'", "DisplayName"))
        elif not present(body.get("DisplayName")):
            out.append(Finding("required", WARNING, "no DisplayName: QuickBooks builds one "
                               "from the name parts, and qbsync looks an unknown outcome up "
                               "by DisplayName", "DisplayName"))
    elif qbo_type == "Item":
        need("Name")
        item_type = body.get("Type")
        if not present(item_type):
            need("Type", " (Inventory, NonInventory or Service)")
        elif item_type not in ITEM_TYPES:
            out.append(Finding("required", ERROR, f"Type {item_type!r}: qbsync can create "
                               f"only {', '.join(ITEM_TYPES)} items", "Type"))
        else:
            for field in ITEM_NEEDS[item_type]:
                need(field, f" for a {item_type} item")
    elif qbo_type in SALES_TYPES:
        if qbo_type in ("Invoice", "CreditMemo"):
            need("CustomerRef")
        if qbo_type == "RefundReceipt":
            need("DepositToAccountRef", " (the account the money is paid out of)")
        if present(body.get("Line")) and not isinstance(body["Line"], list):
            out.append(Finding("required", ERROR, "Line must be an array of lines", "Line"))
        elif not body.get("Line"):
            need("Line", " (at least one)")
        out += _line_shapes(body)
    elif qbo_type == "Payment":
        need("CustomerRef")
        need("TotalAmt")
        for i, line in lines(body):
            at = ("Line", i)
            if not present(line.get("Amount")):
                out.append(Finding("required", ERROR, "a payment line needs Amount",
                                   path_of((*at, "Amount"))))
            links = line.get("LinkedTxn")
            if not isinstance(links, list) or len(links) != 1:
                out.append(Finding("required", ERROR, "a payment line needs exactly one "
                                   "LinkedTxn (the invoice or credit memo it pays)",
                                   path_of((*at, "LinkedTxn"))))
                continue
            link = links[0] if isinstance(links[0], dict) else {}
            for field in ("TxnId", "TxnType"):
                if not present(link.get(field)):
                    out.append(Finding("required", ERROR, f"LinkedTxn needs {field}",
                                       path_of((*at, "LinkedTxn", 0, field))))
            if present(link.get("TxnType")) and link["TxnType"] not in ("Invoice", "CreditMemo"):
                out.append(Finding("required", ERROR, f"a payment applies to an Invoice or a "
                                   f"CreditMemo, not {link['TxnType']!r} (QuickBooks error "
                                   "6000)", path_of((*at, "LinkedTxn", 0, "TxnType"))))
    return out


def _line_shapes(body: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for i, line in lines(body):
        kind = line.get("DetailType")
        at = ("Line", i)
        if not present(kind):
            out.append(Finding("required", ERROR, "a line needs DetailType",
                               path_of((*at, "DetailType"))))
        elif kind == "SalesItemLineDetail":
            if not present(line.get("Amount")):
                out.append(Finding("required", ERROR, "a sales line needs Amount",
                                   path_of((*at, "Amount"))))
            detail = line.get("SalesItemLineDetail")
            if not isinstance(detail, dict) or not present(detail.get("ItemRef")):
                out.append(Finding("required", ERROR, "a sales line without ItemRef is text "
                                   "only: QuickBooks ignores its Amount", path_of(
                                       (*at, "SalesItemLineDetail", "ItemRef"))))
        elif kind == "GroupLineDetail":
            out.append(Finding("required", ERROR, "qbsync cannot push group lines "
                               "(GroupLineDetail)", path_of((*at, "DetailType"))))
    return out


def lengths(qbo_type: str, body: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for field, limit in LIMITS.get(qbo_type, {}).items():
        if field.partition(".")[0].partition("[")[0] not in body:
            continue   # most fields are not sent: the cheap test first
        head, _, tail = field.partition("[].")
        if tail:
            values = [((head, i, *tail.split(".")), get(line, tail))
                      for i, line in lines(body)]
        else:
            values = [(tuple(field.split(".")), get(body, field))]
        for parts, value in values:
            if isinstance(value, str) and utf16_length(value) > limit:
                out.append(Finding("length", ERROR, f"{utf16_length(value)} characters, "
                                   f"QuickBooks takes at most {limit} (error 2050; counted in "
                                   "UTF-16 units: an emoji counts two)", path_of(parts)))
    if qbo_type in SALES_TYPES and len(lines(body)) > MAX_LINES:
        out.append(Finding("length", ERROR, f"{len(lines(body))} lines, QuickBooks takes at "
                           f"most {MAX_LINES} on a taxable transaction", "Line"))
    return out


def characters(qbo_type: str, body: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for field in NAME_FIELDS.get(qbo_type, ()):
        value = body.get(field)
        if isinstance(value, str):
            bad = [name for ch, name in FORBIDDEN.items() if ch in value]
            if bad:
                out.append(Finding("characters", ERROR, f"{field} contains {', '.join(bad)}: "
                                   "QuickBooks refuses ':', TAB and newline in names",
                                   field))
    return out


def emails(qbo_type: str, body: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for field in EMAILS.get(qbo_type, ()):
        value = get(body, field)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            out.append(Finding("email", ERROR, "an e-mail address must be a string", field))
        elif utf16_length(value) > 100:
            out.append(Finding("email", ERROR, f"{utf16_length(value)} characters, QuickBooks "
                               "takes at most 100", field))
        elif "@" not in value or "." not in value:
            out.append(Finding("email", ERROR, f"{value!r} has no '@' or no '.': QuickBooks "
                               "refuses it (RFC 822)", field))
    return out


def line_amounts(qbo_type: str, body: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    if qbo_type not in SALES_TYPES:
        return out
    for i, line, detail in sales_lines(body):
        amount, qty, price = (number(line.get("Amount")), number(detail.get("Qty")),
                              number(detail.get("UnitPrice")))
        if amount is None or qty is None or price is None or (qty == 0 and price == 0):
            continue
        expected = cents(qty * price)
        if amount != expected:
            out.append(Finding("line_amount", ERROR, f"Amount {amount} is not round({qty} x "
                               f"{price}, 2) = {expected} (QuickBooks error 6070: Amount is "
                               "not equal to UnitPrice * Qty)", path_of(("Line", i, "Amount"))))
    return out


def line_totals(body: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """(sales, discounts) of a sales transaction: the Amounts of the sales lines QuickBooks
    counts, and of its discount lines (percentages taken of the sales)."""
    sales = sum((number(line.get("Amount")) or Decimal(0)
                 for _, line, detail in sales_lines(body) if present(detail.get("ItemRef"))),
                Decimal(0))
    discount = Decimal(0)
    for _, line in lines(body):
        if line.get("DetailType") != "DiscountLineDetail":
            continue
        detail = line.get("DiscountLineDetail") or {}
        if isinstance(detail, dict) and detail.get("PercentBased") in (True, "true"):
            discount += cents(sales * (number(detail.get("DiscountPercent")) or 0) / 100)
        else:
            discount += abs(number(line.get("Amount")) or Decimal(0))
    return sales, discount


def document_total(body: dict[str, Any]) -> Decimal | None:
    """What QuickBooks will make the transaction's TotalAmt, when the body says enough:
    tax included (or not applicable), or tax excluded at rates named by tax_code:<rate>
    settings without discounts; else None."""
    sales, discount = line_totals(body)
    calc = body.get("GlobalTaxCalculation") or "TaxExcluded"
    if calc in ("TaxInclusive", "NotApplicable"):
        return sales - discount
    if discount:
        return None
    bases: dict[Decimal, Decimal] = {}
    for _, line, detail in sales_lines(body):
        if not present(detail.get("ItemRef")):
            continue
        ref = detail.get("TaxCodeRef")
        match = TAX_RATE_SETTING.match(str(ref.get("$setting"))) if isinstance(ref, dict) \
            else None
        if match is None:
            return None
        rate = Decimal(match[1])
        bases[rate] = bases.get(rate, Decimal(0)) + (number(line.get("Amount")) or 0)
    return sales + sum((cents(base * rate / 100) for rate, base in bases.items()), Decimal(0))


def totals(qbo_type: str, body: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    if qbo_type in SALES_TYPES:
        running = Decimal(0)
        for i, line in lines(body):
            kind = line.get("DetailType")
            amount = number(line.get("Amount"))
            if kind == "SalesItemLineDetail":
                detail = line.get("SalesItemLineDetail")
                if isinstance(detail, dict) and present(detail.get("ItemRef")):
                    running += amount or 0
            elif kind == "SubTotalLineDetail" and amount is not None and amount != running:
                out.append(Finding("totals", ERROR, f"the subtotal line says {amount}, the "
                                   f"sales lines before it add up to {running} (QuickBooks "
                                   "recomputes it)", path_of(("Line", i, "Amount"))))
        sales, discount = line_totals(body)
        if discount > sales:
            out.append(Finding("totals", ERROR, f"the discounts ({discount}) exceed the sales "
                               f"lines ({sales}): QuickBooks error 6000", "Line"))
        stated = number(body.get("TotalAmt"))
        if stated is not None:
            expected = document_total(body)
            if expected is not None and expected != stated:
                out.append(Finding("totals", ERROR, f"TotalAmt {stated}, but the lines make "
                                   f"{expected}", "TotalAmt"))
            elif expected is None and stated < sales - discount:
                out.append(Finding("totals", ERROR, f"TotalAmt {stated} is below the lines' "
                                   f"net amount {sales - discount}", "TotalAmt"))
    elif qbo_type == "Payment":
        total = number(body.get("TotalAmt"))
        applied = sum((number(line.get("Amount")) or Decimal(0) for _, line in lines(body)),
                      Decimal(0))
        if total is not None and total < 0:
            out.append(Finding("totals", ERROR, f"TotalAmt {total} is negative (QuickBooks "
                               "error 6000)", "TotalAmt"))
        if total is not None and applied > total:
            out.append(Finding("totals", ERROR, f"the lines apply {applied}, more than the "
                               f"payment's TotalAmt {total} (QuickBooks error 6000)", "Line"))
        for i, line in lines(body):
            amount = number(line.get("Amount"))
            if amount is not None and amount < 0:
                out.append(Finding("totals", ERROR, f"a payment line of {amount} (QuickBooks "
                                   "error 6000)", path_of(("Line", i, "Amount"))))
    return out


def tax_codes(qbo_type: str, body: dict[str, Any], tax: TaxContext) -> list[Finding]:
    out: list[Finding] = []
    if qbo_type not in SALES_TYPES:
        return out
    if tax.model == "vat" and not present(body.get("GlobalTaxCalculation")):
        out.append(Finding("tax_code", WARNING, "no GlobalTaxCalculation: QuickBooks takes the "
                           "amounts as TaxExcluded (net); say TaxInclusive when prices "
                           "include VAT", "GlobalTaxCalculation"))
    for i, _line, detail in sales_lines(body):
        if not present(detail.get("ItemRef")):
            continue
        at = path_of(("Line", i, "SalesItemLineDetail", "TaxCodeRef"))
        ref = detail.get("TaxCodeRef")
        if tax.model == "vat":
            if not present(ref):
                out.append(Finding("tax_code", ERROR, "no TaxCodeRef: a VAT company needs a "
                                   "tax code on every sales line (QuickBooks: 'Make sure all "
                                   "your transactions have a VAT rate')", at))
            elif tax.us_code(ref):
                out.append(Finding("tax_code", ERROR, f"{tax.us_code(ref)} is a US tax code; "
                                   "this company charges VAT: name the line's rate "
                                   "({\"$setting\": \"tax_code:<rate>\"})", at))
        elif tax.model == "us":
            if not present(ref):
                out.append(Finding("tax_code", WARNING, "no TaxCodeRef: QuickBooks takes the "
                                   "line as NON (not taxable) in a US company", at))
            elif tax.us_code(ref) is None:
                out.append(Finding("tax_code", ERROR, "a US company takes only TAX or NON as "
                                   "a line's tax code (QuickBooks error 6100); the rate is the "
                                   "company's", at))
    return out


def money(body: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []

    def walk(node: Any, parts: tuple[str | int, ...]) -> None:
        pairs = node.items() if isinstance(node, dict) else (
            enumerate(node) if isinstance(node, list) else ())
        for key, value in pairs:
            at = (*parts, key)
            if isinstance(value, dict | list):
                walk(value, at)
            elif key in MONEY_FIELDS or key in FINE_FIELDS:
                if value is None:
                    continue
                amount = number(value)
                if amount is None:
                    out.append(Finding("money", ERROR, f"{value!r} is not a finite number",
                                       path_of(at)))
                elif key in MONEY_FIELDS and decimals(amount) > 2:
                    out.append(Finding("money", ERROR, f"{amount} has {decimals(amount)} "
                                       "decimals: QuickBooks keeps cents; round it in the "
                                       "mapping (round(x, 2))", path_of(at)))
                elif key in FINE_FIELDS and decimals(amount) > 5:
                    out.append(Finding("money", WARNING, f"{amount} has {decimals(amount)} "
                                       "decimals: QuickBooks keeps 5", path_of(at)))

    walk(body, ())
    return out


def reference_shapes(body: dict[str, Any]) -> list[Finding]:
    """`$ref` becomes {"value": Id}, `$id` the plain Id: fields named *Ref take the first,
    TxnId the second."""
    out: list[Finding] = []

    def walk(node: Any, parts: tuple[str | int, ...]) -> None:
        pairs = node.items() if isinstance(node, dict) else (
            enumerate(node) if isinstance(node, list) else ())
        for key, value in pairs:
            at = (*parts, key)
            if isinstance(value, dict) and "$id" in value and isinstance(key, str) \
                    and key.endswith("Ref"):
                out.append(Finding("reference", ERROR, f'{key} takes a reference object: '
                                   'use {"$ref": [...]} ("$id" gives the bare Id)', path_of(at)))
            elif isinstance(value, dict) and "$ref" in value and key == "TxnId":
                out.append(Finding("reference", ERROR, 'TxnId takes the bare Id: use '
                                   '{"$id": [...]} ("$ref" gives {"value": Id})', path_of(at)))
            elif isinstance(value, dict | list):
                walk(value, at)

    walk(body, ())
    return out


def currencies(body: dict[str, Any], company: CompanyCurrency) -> list[Finding]:
    """What the daemon refuses of a CurrencyRef before sending (decide.currency_refusal): a
    shape other than {"value": code} (QB003), and, when the company's currency is known and
    it has multicurrency off, another currency than its own (QB005). A {"$setting": …}
    is the setting rule's."""
    ref = body.get("CurrencyRef")
    if ref is None or (isinstance(ref, dict) and "$setting" in ref):
        return []
    code = ref.get("value") if isinstance(ref, dict) else None
    if not isinstance(code, str) or not code.strip():
        return [Finding("currency", ERROR, 'CurrencyRef must be {"value": "<ISO 4217 '
                        'currency code>"}: the daemon fails the row (QB003)', "CurrencyRef")]
    code = code.strip().upper()
    if company.home and company.multicurrency is False and code != company.home.upper():
        return [Finding("currency", ERROR, f"the body is in {code} but the QuickBooks company "
                        f"keeps its books in {company.home.upper()} and has multicurrency "
                        "off: the daemon fails the row (QB005) without sending it. Map it in "
                        f"{company.home.upper()}, leave such rows out, or turn multicurrency "
                        "on in QuickBooks", "CurrencyRef.value")]
    return []


# Which QuickBooks type a reference field names (the referenced entity must push that type)
REF_TYPES = {"CustomerRef": "Customer", "ItemRef": "Item"}


def reference_types(body: dict[str, Any], types: dict[str, str]) -> list[Finding]:
    """A CustomerRef names a Customer entity, an ItemRef an Item, a LinkedTxn's TxnId the
    type its TxnType says; `types`: entity -> QuickBooks type."""
    out: list[Finding] = []

    def walk(node: Any, parts: tuple[str | int, ...]) -> None:
        pairs = node.items() if isinstance(node, dict) else (
            enumerate(node) if isinstance(node, list) else ())
        for key, value in pairs:
            at = (*parts, key)
            target = value.get("$ref", value.get("$id")) if isinstance(value, dict) else None
            if isinstance(target, list) and target and str(target[0]) in types:
                want = REF_TYPES.get(key) if isinstance(key, str) else None
                if key == "TxnId" and isinstance(node, dict):
                    want = node.get("TxnType") if isinstance(node.get("TxnType"), str) else None
                got = types[str(target[0])]
                if want and got != want:
                    out.append(Finding("reference", ERROR, f"{key} names {target[0]} "
                                       f"{target[1]}, a {got}; QuickBooks wants a {want} here",
                                       path_of(at)))
            elif isinstance(value, dict | list):
                walk(value, at)

    walk(body, ())
    return out


def duplicate_doc_numbers(docs: list[tuple[str, str, str, str]]
                          ) -> dict[tuple[str, str], Finding]:
    """(entity, key, QuickBooks type, DocNumber) of the bodies mapped -> a finding for each
    key whose DocNumber an earlier key of the same type has (QuickBooks error 6140)."""
    first: dict[tuple[str, str], tuple[str, str]] = {}
    out: dict[tuple[str, str], Finding] = {}
    for entity, key, qbo_type, doc in docs:
        owner = first.setdefault((qbo_type, doc), (entity, key))
        if owner != (entity, key):
            out[(entity, key)] = Finding(
                "doc_number", ERROR, f"DocNumber {doc!r} is also {owner[0]} {owner[1]}'s: "
                f"QuickBooks refuses a second {qbo_type} with it (error 6140)", "DocNumber")
    return out
