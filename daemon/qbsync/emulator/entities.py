"""Create / update / delete / void of the writable entities, with QuickBooks semantics.

Decisions where the fact sheet is silent ([U]):

* Customer without DisplayName and without any name part -> 6080 "No name provided".
* A full update that omits Customer ``DisplayName`` rebuilds it from the name parts, or keeps
  the old one (QBO never stores a Customer without one); a sparse update that blanks it -> 2020.
* Customer ``Balance``/``BalanceWithJobs`` are read-only and stay 0 (the emulator does not post
  invoices to the customer's balance).
* With ``CustomTxnNumbers`` off, the DocNumber sent on create is ignored and the next number of
  the realm's sequence (starting at 1001, skipping numbers in use) is assigned; on update the
  stored DocNumber is kept.
* The 6070 check applies when both ``Qty`` and ``UnitPrice`` are sent and not both zero
  (python-quickbooks sends ``0`` for unset numbers).
* A SalesItemLineDetail line without ``ItemRef`` is a text line: its Amount is not counted.
* Response invoices carry a ``SubTotalLineDetail`` line (no Id) computed by the emulator, like
  QBO; SubTotal lines sent by the client are dropped and recomputed.
* Deleting a Customer or Item -> 500 "Unsupported Operation" (they are made inactive instead).
* Void: line Amounts, Qty, TotalAmt, Balance and tax become 0 and PrivateNote becomes
  "Voided" (prefixing any existing note); the invoice remains readable and queryable.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from . import faults, tax
from .store import NAME_FIELD, Company
from .validation import (
    as_json_number,
    check_chars,
    check_date,
    check_email,
    check_len,
    dec,
    money,
    normalise_sync_token,
    present,
    resolve_ref,
)

SYSTEM_FIELDS = {"Id", "SyncToken", "MetaData", "domain", "sparse", "status"}
READ_ONLY: dict[str, set[str]] = {
    "Customer": {"Balance", "BalanceWithJobs", "FullyQualifiedName", "Level"},
    "Item": {"FullyQualifiedName", "Level"},
    "Invoice": {"TotalAmt", "Balance", "HomeTotalAmt", "HomeBalance", "InvoiceLink"},
    "CreditMemo": {"TotalAmt", "Balance", "HomeTotalAmt", "HomeBalance", "RemainingCredit"},
}
ITEM_TYPES = ("Inventory", "NonInventory", "Service", "Category")
CUSTOMER_LIMITS = {
    "DisplayName": 500,
    "Title": 16,
    "Suffix": 16,
    "GivenName": 100,
    "MiddleName": 100,
    "FamilyName": 100,
    "CompanyName": 100,
    "PrintOnCheckName": 110,
    "Notes": 2000,
    "PrimaryPhone.FreeFormNumber": 30,
    "Mobile.FreeFormNumber": 30,
    "AlternatePhone.FreeFormNumber": 30,
    "Fax.FreeFormNumber": 30,
}
NAME_PARTS = ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")
CUSTOMER_CHARS = ("DisplayName", *NAME_PARTS, "PrintOnCheckName")
ADDRESS_LIMITS = {
    "Line1": 500,
    "Line2": 500,
    "Line3": 500,
    "Line4": 500,
    "Line5": 500,
    "City": 255,
    "Country": 255,
    "CountrySubDivisionCode": 255,
    "PostalCode": 30,
}


class Writer:
    """Applies writes to one company. ``now`` is the emulated ISO timestamp of the request."""

    def __init__(self, company: Company, now: str, today: str, include: set[str]) -> None:
        self.c = company
        self.now = now
        self.today = today
        self.include = include

    # --- dispatch -------------------------------------------------------------------------

    def write(self, entity: str, body: Any, operation: str | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise faults.invalid_property(
                f"Property Name:{entity} specified is unsupported or "
                "invalid: expected a JSON object"
            )
        op = (operation or "").lower()
        if op == "delete":
            return self.delete(entity, body)
        if op == "void":
            return self.void(entity, body)
        if op not in ("", "create", "update"):
            raise faults.unsupported(f"Operation {operation} is not supported.")
        if present(body.get("Id")):
            return self.update(entity, body)
        if op == "update":
            raise faults.required("Id")
        return self.create(entity, body)

    def create(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = {k: v for k, v in body.items() if k not in SYSTEM_FIELDS}
        obj = self._build(entity, obj, None)
        obj["Id"] = self.c.allocate_id(entity)
        obj["SyncToken"] = "0"
        obj["domain"] = "QBO"
        obj["sparse"] = False
        obj["MetaData"] = {"CreateTime": self.now, "LastUpdatedTime": self.now}
        self._index_docnum_auto(entity, obj)
        self.c.put(entity, obj, None)
        return obj

    def _existing(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        id_ = str(body.get("Id"))
        old = self.c.get(entity, id_)
        if old is None:
            raise faults.not_found(entity, id_)
        token = normalise_sync_token(body.get("SyncToken"))
        if token is None:
            raise faults.required("SyncToken")
        if token != old["SyncToken"]:
            raise faults.stale_object()
        return old

    def _bump(self, old: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
        obj["Id"] = old["Id"]
        obj["SyncToken"] = str(int(old["SyncToken"]) + 1)
        obj["domain"] = "QBO"
        obj["sparse"] = False
        obj["MetaData"] = {"CreateTime": old["MetaData"]["CreateTime"], "LastUpdatedTime": self.now}
        return obj

    def update(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        old = self._existing(entity, body)
        sparse = body.get("sparse") is True or str(body.get("sparse")).lower() == "true"
        sent = {k: v for k, v in body.items() if k not in SYSTEM_FIELDS}
        if sparse:
            name_field = NAME_FIELD.get(entity)
            if name_field and name_field in sent and not present(sent[name_field]):
                raise faults.required(name_field)
            merged = {k: v for k, v in old.items() if k not in SYSTEM_FIELDS}
            merged.update(sent)
            obj = merged
        else:
            obj = sent
        obj = self._build(entity, obj, old)
        self._bump(old, obj)
        self.c.put(entity, obj, old)
        return obj

    def delete(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if entity not in ("Invoice", "CreditMemo"):
            raise faults.unsupported(f"Operation Delete is not supported for {entity}.")
        if not present(body.get("Id")):
            raise faults.required("Id")
        old = self._existing(entity, body)
        stub = {
            "domain": "QBO",
            "status": "Deleted",
            "Id": old["Id"],
            "MetaData": {"CreateTime": old["MetaData"]["CreateTime"], "LastUpdatedTime": self.now},
        }
        self.c.remove(entity, old["Id"], stub)
        return {"status": "Deleted", "domain": "QBO", "Id": old["Id"]}

    def void(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if entity != "Invoice":
            raise faults.unsupported(f"Operation Void is not supported for {entity}.")
        if not present(body.get("Id")):
            raise faults.required("Id")
        old = self._existing(entity, body)
        obj = {k: v for k, v in old.items() if k not in SYSTEM_FIELDS}
        lines = []
        for line in obj.get("Line", []):
            line = dict(line)
            line["Amount"] = 0
            if line.get("DetailType") == "SalesItemLineDetail":
                detail = dict(line.get("SalesItemLineDetail") or {})
                detail["Qty"] = 0
                line["SalesItemLineDetail"] = detail
            lines.append(line)
        obj["Line"] = lines
        obj["TotalAmt"] = obj["Balance"] = obj["HomeTotalAmt"] = obj["HomeBalance"] = 0
        obj["TxnTaxDetail"] = {"TotalTax": 0, "TaxLine": []}
        note = old.get("PrivateNote")
        obj["PrivateNote"] = f"Voided - {note}" if note and note != "Voided" else "Voided"
        obj["Voided"] = True
        self._bump(old, obj)
        self.c.put(entity, obj, old)
        return obj

    # --- builders -------------------------------------------------------------------------

    def _build(
        self, entity: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        for key in READ_ONLY.get(entity, ()):
            obj.pop(key, None)
        if entity == "Customer":
            return self._customer(obj, old)
        if entity == "Item":
            return self._item(obj, old)
        return self._txn(entity, obj, old)

    def _customer(self, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        if not present(obj.get("DisplayName")):
            parts = [str(obj[k]) for k in NAME_PARTS if present(obj.get(k))]
            if parts:
                obj["DisplayName"] = " ".join(parts)
            elif old is not None:
                obj["DisplayName"] = old["DisplayName"]
            else:
                raise faults.fault(
                    6080,
                    "No name provided",
                    "Please provide a DisplayName or at least one of Title, "
                    "GivenName, MiddleName, FamilyName or Suffix.",
                    "DisplayName",
                )
        for field in CUSTOMER_CHARS:
            check_chars(obj, field)
        for path, limit in CUSTOMER_LIMITS.items():
            check_len(obj, path, limit)
        check_email(obj, "PrimaryEmailAddr.Address")
        for addr in ("BillAddr", "ShipAddr"):
            self._address(obj, addr)
        name = str(obj["DisplayName"])
        other = self.c.id_by_name("Customer", name)
        if other is not None and (old is None or other != old["Id"]):
            raise faults.fault(
                6240,
                "Duplicate Name Exists Error",
                "The name supplied already exists. : Another customer, vendor or employee is "
                f"already using this name. Please use a different name. Id={other}",
            )
        if "DefaultTaxCodeRef" in obj:
            obj["DefaultTaxCodeRef"] = resolve_ref(
                self.c, "TaxCode", obj["DefaultTaxCodeRef"], "DefaultTaxCodeRef"
            )
        if present(obj.get("ParentRef")):
            obj["ParentRef"] = resolve_ref(
                self.c, "Customer", obj["ParentRef"], "ParentRef", "DisplayName"
            )
        obj.setdefault("Active", True)
        if old is not None:
            obj["CurrencyRef"] = old.get("CurrencyRef")
        else:
            obj["CurrencyRef"] = {"value": self.c.settings.currency}
        obj["FullyQualifiedName"] = name
        obj["Balance"] = 0
        obj["BalanceWithJobs"] = 0
        return obj

    def _address(self, obj: dict[str, Any], field: str) -> None:
        addr = obj.get(field)
        if addr in (None, ""):
            return
        if not isinstance(addr, dict):
            raise faults.invalid_property(
                f"Property Name:{field} specified is unsupported or invalid", field
            )
        for key, limit in ADDRESS_LIMITS.items():
            value = addr.get(key)
            if isinstance(value, str) and len(value) > limit:
                raise faults.too_long(f"{field}.{key}", limit, len(value))
        combined = sum(len(str(addr.get(f"Line{i}") or "")) for i in range(1, 6))
        if combined > 2000:
            raise faults.too_long(f"{field}.Line1-5", 2000, combined)

    def _item(self, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        if not present(obj.get("Name")):
            raise faults.required("Name")
        check_chars(obj, "Name")
        check_len(obj, "Name", 100)
        check_len(obj, "Sku", 100)
        check_len(obj, "Description", 4000)
        check_len(obj, "PurchaseDesc", 4000)
        other = self.c.id_by_name("Item", str(obj["Name"]))
        if other is not None and (old is None or other != old["Id"]):
            raise faults.fault(
                6240,
                "Duplicate Name Exists Error",
                "The name supplied already exists. : Another product or service is already "
                f"using this name. Please use a different name. Id={other}",
            )
        type_ = obj.get("Type")
        if not present(type_):
            raise faults.required("Type")
        if type_ not in ITEM_TYPES:
            raise faults.business(
                f"Invalid Type: {type_}. Supported types: " + ", ".join(ITEM_TYPES), "Type"
            )
        if old is not None and old.get("Type") == "Inventory" and type_ != "Inventory":
            raise faults.business("An Inventory item cannot be changed to another type.", "Type")
        needs = {
            "Service": ("IncomeAccountRef",),
            "NonInventory": ("IncomeAccountRef",),
            "Inventory": ("IncomeAccountRef", "AssetAccountRef", "QtyOnHand", "InvStartDate"),
        }
        for field in needs.get(type_, ()):
            if not present(obj.get(field)):
                raise faults.required(field)
        for field in ("IncomeAccountRef", "ExpenseAccountRef", "AssetAccountRef"):
            if field in obj:
                obj[field] = resolve_ref(self.c, "Account", obj[field], field, "Name")
                if obj[field] is None:
                    del obj[field]
        if "SalesTaxCodeRef" in obj:
            obj["SalesTaxCodeRef"] = resolve_ref(
                self.c, "TaxCode", obj["SalesTaxCodeRef"], "SalesTaxCodeRef"
            )
        for field in ("UnitPrice", "PurchaseCost", "QtyOnHand"):
            if field in obj:
                value = dec(obj[field], field)
                obj[field] = as_json_number(value) if value is not None else None
        check_date(obj, "InvStartDate")
        obj.setdefault("Active", True)
        obj["TrackQtyOnHand"] = type_ == "Inventory" or (
            old is not None and bool(old.get("TrackQtyOnHand"))
        )
        obj["FullyQualifiedName"] = obj["Name"]
        return obj

    # --- transactions ---------------------------------------------------------------------

    def _txn(self, entity: str, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        settings = self.c.settings
        if not present(obj.get("CustomerRef")):
            raise faults.required("CustomerRef")
        obj["CustomerRef"] = resolve_ref(
            self.c, "Customer", obj["CustomerRef"], "CustomerRef", "DisplayName"
        )
        lines = obj.get("Line")
        if not lines:
            raise faults.required("Line")
        if not isinstance(lines, list):
            raise faults.invalid_property(
                "Property Name:Line specified is unsupported or invalid", "Line"
            )
        # DocNumber
        if settings.custom_txn_numbers:
            doc = obj.get("DocNumber")
            if present(doc):
                doc = str(doc)
                if len(doc) > 21:
                    raise faults.too_long("DocNumber", 21, len(doc))
                obj["DocNumber"] = doc
                if "allowduplicatedocnum" not in self.include:
                    others = [
                        i
                        for i in self.c.ids_by_docnum(entity, doc)
                        if old is None or i != old["Id"]
                    ]
                    if others:
                        raise faults.fault(
                            6140,
                            "Duplicate Document Number Error",
                            "Duplicate Document Number Error : You must specify a different "
                            "number. This number has already been used. "
                            f"DocNumber={doc} is assigned to TxnType={entity} with "
                            f"TxnId={others[0]}",
                        )
            else:
                obj.pop("DocNumber", None)
        else:
            obj.pop("DocNumber", None)
            if old is not None and old.get("DocNumber"):
                obj["DocNumber"] = old["DocNumber"]
        for field in ("TxnDate", "DueDate", "ShipDate"):
            if obj.get(field) == "":
                del obj[field]
            check_date(obj, field)
        obj.setdefault("TxnDate", self.today)
        obj.setdefault("DueDate", obj["TxnDate"])
        check_len(obj, "PrivateNote", 4000)
        check_len(obj, "CustomerMemo.value", 1000)
        check_email(obj, "BillEmail.Address")
        customer = self.c.get("Customer", obj["CustomerRef"]["value"]) or {}
        for addr in ("BillAddr", "ShipAddr"):
            if not present(obj.get(addr)) and customer.get(addr):
                obj[addr] = customer[addr]
            self._address(obj, addr)
        if settings.tax_mode == "us":
            calc = "TaxExcluded"
            obj.pop("GlobalTaxCalculation", None)
        else:
            calc = obj.get("GlobalTaxCalculation") or "TaxExcluded"
            if calc not in ("TaxExcluded", "TaxInclusive", "NotApplicable"):
                raise faults.business(
                    f"Invalid GlobalTaxCalculation: {calc}", "GlobalTaxCalculation"
                )
            obj["GlobalTaxCalculation"] = calc
        self._lines(entity, obj, lines, calc)
        obj["CurrencyRef"] = {"value": settings.currency}
        obj.setdefault("ExchangeRate", 1)
        obj.setdefault("EmailStatus", "NotSet")
        obj.setdefault("PrintStatus", "NotSet")
        return obj

    def _lines(self, entity: str, obj: dict[str, Any], lines: list[Any], calc: str) -> None:
        us = self.c.settings.tax_mode == "us"
        rates = self.c.entities["TaxRate"]
        out: list[dict[str, Any]] = []
        groups: dict[str, tax.TaxGroup] = {}
        subtotal = Decimal(0)
        fixed_discount = Decimal(0)
        pct_discounts: list[tuple[dict[str, Any], Decimal]] = []
        n = 0
        for raw in lines:
            if not isinstance(raw, dict):
                raise faults.invalid_property(
                    "Property Name:Line specified is unsupported or invalid", "Line"
                )
            dtype = raw.get("DetailType")
            if dtype == "SubTotalLineDetail":
                continue
            n += 1
            line = {k: v for k, v in raw.items() if k not in ("Id", "LineNum")}
            line["Id"] = str(n)
            line["LineNum"] = n
            check_len(line, "Description", 4000)
            if dtype == "SalesItemLineDetail":
                amount = self._sales_line(line, n, us, rates, groups)
                subtotal += amount
            elif dtype == "DiscountLineDetail":
                detail = dict(line.get("DiscountLineDetail") or {})
                if present(detail.get("DiscountAccountRef")):
                    detail["DiscountAccountRef"] = resolve_ref(
                        self.c,
                        "Account",
                        detail["DiscountAccountRef"],
                        "Line.DiscountLineDetail.DiscountAccountRef",
                        "Name",
                    )
                line["DiscountLineDetail"] = detail
                if detail.get("PercentBased") in (True, "true"):
                    pct = dec(
                        detail.get("DiscountPercent"), "Line.DiscountLineDetail.DiscountPercent"
                    )
                    if pct is None:
                        raise faults.required("Line.DiscountLineDetail.DiscountPercent")
                    pct_discounts.append((line, pct))
                else:
                    amount = dec(line.get("Amount"), "Line.Amount")
                    if amount is None:
                        raise faults.required("Line.Amount")
                    fixed_discount += abs(amount)
                    line["Amount"] = as_json_number(abs(amount))
            elif dtype == "DescriptionOnly":
                line.setdefault("DescriptionLineDetail", line.pop("DescriptionOnly", {}) or {})
            elif dtype == "GroupLineDetail":
                raise faults.business(
                    "GroupLineDetail lines are not supported by the emulator",
                    "Line.GroupLineDetail",
                )
            elif not present(dtype):
                raise faults.required("Line.DetailType")
            else:
                raise faults.invalid_property(
                    f"Property Name:Line.DetailType specified is unsupported or invalid: {dtype}",
                    "Line.DetailType",
                )
            out.append(line)
        discount = fixed_discount
        for line, pct in pct_discounts:
            amount = money(subtotal * pct / 100)
            line["Amount"] = as_json_number(amount)
            discount += amount
        if discount > subtotal:
            raise faults.business(
                "The discount is larger than the subtotal of the transaction",
                "Line.DiscountLineDetail",
            )
        sub_line = {
            "Amount": as_json_number(subtotal),
            "DetailType": "SubTotalLineDetail",
            "SubTotalLineDetail": {},
        }
        first_discount = next(
            (i for i, ln in enumerate(out) if ln.get("DetailType") == "DiscountLineDetail"),
            len(out),
        )
        out.insert(first_discount, sub_line)
        result = tax.compute(list(groups.values()), discount, calc)
        obj["Line"] = out
        detail: dict[str, Any] = {
            "TotalTax": as_json_number(result.total_tax),
            "TaxLine": result.tax_lines,
        }
        if us:
            detail["TaxLine"] = [
                t for t in result.tax_lines if t["TaxLineDetail"]["TaxRateRef"]["value"] == "1"
            ]
            if detail["TaxLine"]:
                detail["TxnTaxCodeRef"] = {"value": "1"}
        obj["TxnTaxDetail"] = detail
        total = as_json_number(result.total_amt)
        obj["TotalAmt"] = total
        obj["HomeTotalAmt"] = total
        obj["Balance"] = total
        if entity == "CreditMemo":
            obj["RemainingCredit"] = total

    def _sales_line(
        self,
        line: dict[str, Any],
        n: int,
        us: bool,
        rates: dict[str, dict[str, Any]],
        groups: dict[str, tax.TaxGroup],
    ) -> Decimal:
        detail = line.get("SalesItemLineDetail")
        if detail is None:
            detail = {}
        if not isinstance(detail, dict):
            raise faults.invalid_property(
                "Property Name:Line.SalesItemLineDetail specified is unsupported or invalid",
                "Line.SalesItemLineDetail",
            )
        detail = dict(detail)
        line["SalesItemLineDetail"] = detail
        amount = dec(line.get("Amount"), "Line.Amount")
        if amount is None:
            raise faults.required("Line.Amount")
        qty = dec(detail.get("Qty"), "Line.SalesItemLineDetail.Qty")
        price = dec(detail.get("UnitPrice"), "Line.SalesItemLineDetail.UnitPrice")
        if qty is not None and price is not None and (qty != 0 or price != 0):
            expected = money(qty * price)
            if amount != expected:
                raise faults.fault(
                    6070,
                    "Amount calculation incorrect",
                    f"Line {n}: Amount is not equal to UnitPrice * Qty. Supplied value:{amount}, "
                    f"expected: {expected} (= round({qty} x {price}, 2))",
                    "Line.Amount",
                )
        line["Amount"] = as_json_number(amount)
        for key, value in (("Qty", qty), ("UnitPrice", price)):
            if value is not None:
                detail[key] = as_json_number(value)
        if detail.get("ServiceDate") == "":
            del detail["ServiceDate"]
        check_date(detail, "ServiceDate")
        detail.pop("TaxInclusiveAmt", None)
        item = resolve_ref(
            self.c, "Item", detail.get("ItemRef"), "Line.SalesItemLineDetail.ItemRef", "Name"
        )
        if item is None:
            detail.pop("ItemRef", None)
        else:
            detail["ItemRef"] = item
        # tax code
        code_value = None
        ref = detail.get("TaxCodeRef")
        if isinstance(ref, dict):
            code_value = ref.get("value")
        elif isinstance(ref, str | int):
            code_value = ref
        if us:
            code_value = str(code_value) if present(code_value) else "NON"
            if code_value not in ("TAX", "NON"):
                raise faults.fault(
                    6100,
                    "Invalid line TaxCode",
                    f"Line {n}: TaxCodeRef must be TAX or NON for a US company. "
                    f"Supplied value:{code_value}",
                    "Line.SalesItemLineDetail.TaxCodeRef",
                )
            detail["TaxCodeRef"] = {"value": code_value}
            rate_id, rate = (
                ("1", Decimal(str(self.c.settings.us_tax_rate)))
                if code_value == "TAX"
                else ("", Decimal(0))
            )
        else:
            if not present(code_value):
                raise faults.business(
                    f"Make sure all your transactions have a VAT rate before you save. "
                    f"Line {n} has no TaxCodeRef.",
                    "Line.SalesItemLineDetail.TaxCodeRef",
                )
            norm = resolve_ref(
                self.c, "TaxCode", {"value": code_value}, "Line.SalesItemLineDetail.TaxCodeRef"
            )
            assert norm is not None
            code_value = norm["value"]
            detail["TaxCodeRef"] = norm
            rate_id, rate = tax.rate_of_code(self.c.entities["TaxCode"][code_value], rates)
        if item is None:
            return Decimal(0)
        group = groups.get(code_value)
        if group is None:
            group = groups[code_value] = tax.TaxGroup(code_value, rate_id, rate)
        group.amount += amount
        return amount

    def _index_docnum_auto(self, entity: str, obj: dict[str, Any]) -> None:
        if entity in ("Invoice", "CreditMemo") and not self.c.settings.custom_txn_numbers:
            obj["DocNumber"] = self.c.allocate_docnum(entity)
