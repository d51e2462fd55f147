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
  "Voided" (prefixing any existing note); the invoice remains readable and queryable. As in
  Intuit's void sample, nothing else marks it: there is no ``Voided`` field (the company
  remembers which transactions it voided).
* A company in one currency (``Preferences.CurrencyPrefs.MultiCurrencyEnabled`` false, the
  default): transactions carry ``CurrencyRef`` (its home currency) but no ``ExchangeRate`` /
  ``HomeTotalAmt`` / ``HomeBalance`` (real single-currency answers have none). A CurrencyRef
  of another currency on a transaction or a new customer -> 6000, element ``CurrencyRef``
  (no captured answer to this was found: code and wording are the emulator's); one that is
  not ``{"value": code}`` -> 2010.
* A multicurrency company: a transaction is in the currency it names, else in its
  customer's; another currency than the customer's -> 6000 (the customer's currency is fixed
  when it is created, from its CurrencyRef, else the home currency). A foreign-currency
  transaction keeps ``ExchangeRate`` (home units per foreign unit; 1 when not sent, as
  Intuit documents) and gets ``HomeTotalAmt`` = TotalAmt x ExchangeRate.

Payments (ReceivePayment), refunds, payment methods ([U] unless the fact sheet says otherwise):

* Payment: ``CustomerRef`` and ``TotalAmt`` required (2020); ``TotalAmt`` < 0 -> 6000. Each
  ``Line`` has ``Amount`` (>= 0, else 6000) and exactly one ``LinkedTxn`` to an ``Invoice``
  or a ``CreditMemo`` (missing -> 2020; other TxnType or several links -> 6000; unknown or
  deleted Id -> 2500, element ``Line.LinkedTxn.TxnId``). A credit memo line *uses* credit:
  ``applied = sum(invoice lines) - sum(credit memo lines)`` must be >= 0 and <= TotalAmt
  (6000); ``UnappliedAmt = TotalAmt - applied``. Lines are stored as
  ``{"Amount", "LinkedTxn": [{"TxnId", "TxnType"}]}`` (no ``LineEx``/``TxnLineId``).
* Applying more than an invoice's open balance (or a credit memo's RemainingCredit) -> 6000,
  element ``Line.Amount``, "You can't pay more than the amount due"; an update counts the
  payment's own previous amount as available. Another customer's transaction -> 6000; a
  voided invoice -> 6000.
* ``DepositToAccountRef`` defaults to Undeposited Funds; it must be a Bank or Other Current
  Asset account (6000). ``PaymentRefNum`` max 21 (2050), ``PrivateNote`` max 4000.
* Applying / changing / removing a payment rewrites the linked invoice or credit memo:
  ``Balance`` (and ``RemainingCredit``) = TotalAmt - payments, ``LinkedTxn`` lists the
  payments (``TxnType: Payment``), and it gets a new SyncToken and LastUpdatedTime (so a
  client holding the old token gets 5010 and CDC reports it). Client-sent invoice
  ``LinkedTxn``/``Balance`` are ignored. An invoice update whose new total is below what is
  paid -> 6000.
* Voiding or deleting (API) an invoice / credit memo with payments applied -> 6000, element
  ``LinkedTxn``, naming the payments. (The UI helper :meth:`Emulator.delete_entity` unapplies
  them instead.)
* Payment void: ``operation=void`` or, as Intuit documents and python-quickbooks sends, a
  sparse update with ``include=void``. The lines go (``Line: []``, as in Intuit's sample),
  TotalAmt and UnappliedAmt become 0, PrivateNote gets "Voided", balances are restored; a
  voided payment cannot be updated (6000). Delete restores balances and leaves a CDC stub.
* RefundReceipt: built like an Invoice (same line, tax and total rules, 6070, 6140 per
  entity with ``TxnType=RefundReceipt``, auto-numbering when custom numbers are off);
  ``CustomerRef`` optional (as on sales receipts), ``DepositToAccountRef`` (the account
  the money is paid out of) required and Bank / Other Current Asset; ``Balance`` is 0; no
  ``DueDate``. Delete is supported, void is not (500).
* PaymentMethod: ``Name`` required, max 31, unique case-insensitively (6240), no ``:``/TAB/
  newline; ``Type`` CREDIT_CARD or NON_CREDIT_CARD (default), else 6000; cannot be deleted
  (made inactive instead, like other name lists).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from . import faults, tax
from .seed import UNDEPOSITED_FUNDS_ID
from .store import DELETABLE, NAME_FIELD, PAYABLE, TRANSACTIONS, Company, payment_links
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
    "Invoice": {"TotalAmt", "Balance", "HomeTotalAmt", "HomeBalance", "InvoiceLink", "LinkedTxn"},
    "CreditMemo": {
        "TotalAmt",
        "Balance",
        "HomeTotalAmt",
        "HomeBalance",
        "RemainingCredit",
        "LinkedTxn",
    },
    "RefundReceipt": {"TotalAmt", "Balance", "HomeTotalAmt", "HomeBalance"},
    "Payment": {"UnappliedAmt", "HomeTotalAmt"},
    "PaymentMethod": set(),
}
PAYMENT_METHOD_TYPES = ("CREDIT_CARD", "NON_CREDIT_CARD")
#: account types money can be deposited to / paid out of
CASH_ACCOUNT_TYPES = ("Bank", "Other Current Asset")
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
            if entity == "Payment" and "void" in self.include:
                return self.void(entity, body)  # Intuit's documented form for payments
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
        if entity == "Payment":
            self._relink(obj["Id"], {}, payment_links(obj))
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
        if entity == "Payment":
            self._relink(obj["Id"], payment_links(old), payment_links(obj))
        return obj

    def delete(
        self, entity: str, body: dict[str, Any], unlink_payments: bool = False
    ) -> dict[str, Any]:
        """Delete a transaction; it leaves a ``status: Deleted`` stub for CDC.

        An invoice or credit memo that payments are applied to cannot be deleted through the
        API (6000); with ``unlink_payments`` (what the QBO UI does after its "linked
        transactions" warning) the payments' lines for it are removed instead, leaving that
        money unapplied.
        """
        if entity not in DELETABLE:
            raise faults.unsupported(f"Operation Delete is not supported for {entity}.")
        if not present(body.get("Id")):
            raise faults.required("Id")
        old = self._existing(entity, body)
        payments = self.c.payments_of(entity, old["Id"]) if entity in PAYABLE else []
        if payments and not unlink_payments:
            raise self._linked_payments_fault(entity, old["Id"], payments, "delete")
        for pid in payments:
            self._unlink_payment(pid, entity, old["Id"])
        stub = {
            "domain": "QBO",
            "status": "Deleted",
            "Id": old["Id"],
            "MetaData": {"LastUpdatedTime": self.now},
        }
        self.c.remove(entity, old["Id"], stub)
        if entity == "Payment":
            self._relink(old["Id"], payment_links(old), {})
        return {"status": "Deleted", "domain": "QBO", "Id": old["Id"]}

    @staticmethod
    def _linked_payments_fault(
        entity: str, id_: str, payments: list[str], action: str
    ) -> faults.QBOFault:
        return faults.business(
            f"You can't {action} this transaction because payments are applied to it: "
            f"{entity} Id={id_} is linked to Payment Id={', '.join(payments)}. "
            "Delete or void the payments (or unapply them) first.",
            "LinkedTxn",
        )

    def void(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if entity not in ("Invoice", "Payment"):
            raise faults.unsupported(f"Operation Void is not supported for {entity}.")
        if not present(body.get("Id")):
            raise faults.required("Id")
        old = self._existing(entity, body)
        if entity == "Payment":
            return self._void_payment(old)
        payments = self.c.payments_of(entity, old["Id"])
        if payments:
            raise self._linked_payments_fault(entity, old["Id"], payments, "void")
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
        obj["TotalAmt"] = obj["Balance"] = 0
        obj["TxnTaxDetail"] = {"TotalTax": 0, "TaxLine": []}
        note = old.get("PrivateNote")
        obj["PrivateNote"] = f"Voided - {note}" if note and note != "Voided" else "Voided"
        self._bump(old, obj)
        self.c.put(entity, obj, old)
        self.c.voided.add((entity, obj["Id"]))
        return obj

    def merge_customers(self, from_id: str, into_id: str) -> dict[str, Any]:
        """Merge customer ``from_id`` into ``into_id``, as an accountant does in the QBO UI.

        Every transaction (Invoice, CreditMemo, RefundReceipt, Payment) of ``from_id`` and
        every sub-customer whose ParentRef is ``from_id`` moves to ``into_id`` (new SyncToken
        and LastUpdatedTime each, so CDC reports them updated); ``into_id`` is bumped too;
        ``from_id`` disappears: reads give 610 and CDC returns a ``status: Deleted`` stub
        (QBO's webhook calls this operation "Merge").
        """
        customers = self.c.entities["Customer"]
        src, dst = customers.get(from_id), customers.get(into_id)
        if src is None or dst is None:
            raise KeyError(f"unknown customer {from_id if src is None else into_id}")
        if from_id == into_id:
            raise ValueError("cannot merge a customer into itself")
        if dst.get("Active") is False:
            raise ValueError(f"customer {into_id} is inactive; make it active before merging")
        ref = {"value": into_id, "name": dst["DisplayName"]}
        moved: dict[str, list[str]] = {}
        for entity in ("Invoice", "CreditMemo", "RefundReceipt", "Payment"):
            for old in list(self.c.entities[entity].values()):
                if (old.get("CustomerRef") or {}).get("value") == from_id:
                    obj = {k: v for k, v in old.items() if k not in SYSTEM_FIELDS}
                    obj["CustomerRef"] = dict(ref)
                    self._bump(old, obj)
                    self.c.put(entity, obj, old)
                    moved.setdefault(entity, []).append(old["Id"])
        for old in list(customers.values()):
            if (old.get("ParentRef") or {}).get("value") == from_id:
                obj = {k: v for k, v in old.items() if k not in SYSTEM_FIELDS}
                obj["ParentRef"] = dict(ref)
                self._bump(old, obj)
                self.c.put("Customer", obj, old)
                moved.setdefault("Customer", []).append(old["Id"])
        into = {k: v for k, v in dst.items() if k not in SYSTEM_FIELDS}
        self._bump(dst, into)
        self.c.put("Customer", into, dst)
        stub = {
            "domain": "QBO",
            "status": "Deleted",
            "Id": from_id,
            "MetaData": {"LastUpdatedTime": self.now},
        }
        self.c.remove("Customer", from_id, stub)
        return {"from": from_id, "into": into_id, "moved": moved}

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
        if entity == "Payment":
            return self._payment(obj, old)
        if entity == "PaymentMethod":
            return self._payment_method(obj, old)
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
        # what QuickBooks fills in on every customer (Intuit's Customer samples)
        obj.setdefault("Job", False)
        obj.setdefault("BillWithParent", False)
        obj.setdefault("Taxable", bool(obj.get("DefaultTaxCodeRef")))
        obj.setdefault("PreferredDeliveryMethod", "Print")
        obj.setdefault("PrintOnCheckName", str(obj.get("CompanyName") or name)[:110])
        if old is not None:  # fixed when the customer is created
            obj["CurrencyRef"] = old.get("CurrencyRef")
        else:
            obj["CurrencyRef"] = {"value": self._currency_of(obj, None)}
        obj["FullyQualifiedName"] = name
        obj["Balance"] = 0
        obj["BalanceWithJobs"] = 0
        return obj

    def _currency_of(self, obj: dict[str, Any], customer: dict[str, Any] | None) -> str:
        """The currency a transaction (or a new customer, `customer` None) is in: the one
        its CurrencyRef names, else its customer's, else the home currency; refused when the
        company does not take it (see the module's docstring)."""
        settings = self.c.settings
        home = settings.currency
        sent = obj.get("CurrencyRef")
        theirs = ((customer or {}).get("CurrencyRef") or {}).get("value") or home
        if not present(sent):
            return theirs
        code = sent.get("value") if isinstance(sent, dict) else None
        if not isinstance(code, str) or not code.strip():
            raise faults.invalid_property(
                "Property Name:CurrencyRef specified is unsupported or invalid", "CurrencyRef"
            )
        code = code.strip().upper()
        if code != home and not settings.multicurrency:
            raise faults.business(
                f"Multicurrency is not enabled for this company: its transactions are in its "
                f"home currency {home}. Supplied value:{code}",
                "CurrencyRef",
            )
        if customer is not None and code != theirs:
            raise faults.business(
                f"The transaction is in {code} but its customer's currency is {theirs}: a "
                "customer's transactions must be in the customer's currency.",
                "CurrencyRef",
            )
        return code

    def _currency(self, obj: dict[str, Any], customer: dict[str, Any] | None) -> None:
        """A transaction's CurrencyRef, ExchangeRate and HomeTotalAmt, set after its
        TotalAmt."""
        code = self._currency_of(obj, customer)
        obj["CurrencyRef"] = {"value": code}
        if code == self.c.settings.currency:
            # one currency: as in real single-currency answers
            obj.pop("ExchangeRate", None)
            return
        rate = dec(obj.get("ExchangeRate"), "ExchangeRate") or Decimal(1)
        if rate <= 0:
            raise faults.business(f"Invalid ExchangeRate. Supplied value:{rate}", "ExchangeRate")
        obj["ExchangeRate"] = as_json_number(rate)
        total = Decimal(str(obj.get("TotalAmt") or 0))
        obj["HomeTotalAmt"] = as_json_number(money(total * rate))

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
        # what QuickBooks fills in on every item (Intuit's Item samples)
        obj.setdefault("UnitPrice", 0)
        obj.setdefault("PurchaseCost", 0)
        obj.setdefault("Taxable", False)
        obj["TrackQtyOnHand"] = type_ == "Inventory" or (
            old is not None and bool(old.get("TrackQtyOnHand"))
        )
        obj["FullyQualifiedName"] = obj["Name"]
        return obj

    # --- transactions ---------------------------------------------------------------------

    def _txn(self, entity: str, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        settings = self.c.settings
        refund = entity == "RefundReceipt"
        if present(obj.get("CustomerRef")):
            obj["CustomerRef"] = resolve_ref(
                self.c, "Customer", obj["CustomerRef"], "CustomerRef", "DisplayName"
            )
        elif refund:  # optional on sales/refund receipts
            obj.pop("CustomerRef", None)
        else:
            raise faults.required("CustomerRef")
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
        if refund:
            obj.pop("DueDate", None)
            self._cash_fields(obj, required=True)
        else:
            obj.setdefault("DueDate", obj["TxnDate"])
        check_len(obj, "PrivateNote", 4000)
        check_len(obj, "CustomerMemo.value", 1000)
        check_email(obj, "BillEmail.Address")
        customer_ref = obj.get("CustomerRef")
        customer = (self.c.get("Customer", customer_ref["value"]) if customer_ref else None) or {}
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
        if refund:
            obj["Balance"] = 0
        elif old is not None:
            self._open_balance(entity, obj, old["Id"])
        self._currency(obj, customer or None)
        if not refund:  # Intuit's RefundReceipt sample has no EmailStatus
            obj.setdefault("EmailStatus", "NotSet")
        obj.setdefault("PrintStatus", "NotSet")
        obj.setdefault("ApplyTaxAfterDiscount", False)
        if entity == "Invoice":
            obj.setdefault("LinkedTxn", [])  # real invoices list none as []
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
            if amount != expected:  # QuickBooks' words (QuickBooks-V3-PHP-SDK issue 445)
                raise faults.fault(
                    6070,
                    "Amount calculation incorrect in the request.",
                    f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
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
            code_rates = (
                [("1", Decimal(str(self.c.settings.us_tax_rate)))] if code_value == "TAX" else []
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
            code_rates = tax.rates_of_code(self.c.entities["TaxCode"][code_value], rates)
        if item is None:
            return Decimal(0)
        group = groups.get(code_value)
        if group is None:
            group = groups[code_value] = tax.TaxGroup(code_value, code_rates)
        group.amount += amount
        return amount

    def _index_docnum_auto(self, entity: str, obj: dict[str, Any]) -> None:
        if entity in TRANSACTIONS and not self.c.settings.custom_txn_numbers:
            obj["DocNumber"] = self.c.allocate_docnum(entity)

    # --- payments -------------------------------------------------------------------------

    def _cash_fields(self, obj: dict[str, Any], required: bool) -> None:
        """DepositToAccountRef (Bank / Other Current Asset), PaymentMethodRef, PaymentRefNum."""
        if present(obj.get("DepositToAccountRef")):
            ref = resolve_ref(
                self.c, "Account", obj["DepositToAccountRef"], "DepositToAccountRef", "Name"
            )
            assert ref is not None
            account = self.c.entities["Account"][ref["value"]]
            if account.get("AccountType") not in CASH_ACCOUNT_TYPES:
                raise faults.business(
                    f"DepositToAccountRef must be a Bank or Other Current Asset account; "
                    f"{account.get('Name')} (Id={ref['value']}) is {account.get('AccountType')}.",
                    "DepositToAccountRef",
                )
            obj["DepositToAccountRef"] = ref
        elif required:
            raise faults.required("DepositToAccountRef")
        else:
            undeposited = self.c.entities["Account"][UNDEPOSITED_FUNDS_ID]
            obj["DepositToAccountRef"] = {
                "value": UNDEPOSITED_FUNDS_ID,
                "name": undeposited["Name"],
            }
        if present(obj.get("PaymentMethodRef")):
            obj["PaymentMethodRef"] = resolve_ref(
                self.c, "PaymentMethod", obj["PaymentMethodRef"], "PaymentMethodRef", "Name"
            )
        else:
            obj.pop("PaymentMethodRef", None)
        if obj.get("PaymentRefNum") is not None:
            obj["PaymentRefNum"] = str(obj["PaymentRefNum"])
        check_len(obj, "PaymentRefNum", 21)

    def _open_balance(self, entity: str, obj: dict[str, Any], id_: str) -> None:
        """Balance (and RemainingCredit) = TotalAmt - payments applied; LinkedTxn to them."""
        by = self.c.applied.get((entity, id_))
        if not by:
            obj.pop("LinkedTxn", None)
            if entity == "Invoice":
                obj["LinkedTxn"] = []
            return
        paid = sum(by.values(), Decimal(0))
        total = dec(obj.get("TotalAmt"), "TotalAmt") or Decimal(0)
        if paid > total:
            raise faults.business(
                f"The new total {total} of {entity} Id={id_} is less than the payments applied "
                f"to it ({paid}). Unapply or reduce the payments first.",
                "TotalAmt",
            )
        balance = as_json_number(total - paid)
        obj["Balance"] = balance
        if entity == "CreditMemo":
            obj["RemainingCredit"] = balance
        obj["LinkedTxn"] = [{"TxnId": pid, "TxnType": "Payment"} for pid in sorted(by, key=int)]

    def _relink(
        self,
        payment_id: str,
        old: dict[tuple[str, str], Decimal],
        new: dict[tuple[str, str], Decimal],
    ) -> None:
        """Re-index a payment's applications and refresh the invoices / credit memos touched.

        A touched transaction gets a new Balance and LinkedTxn, a new SyncToken and
        LastUpdatedTime (so it shows up in CDC), as QBO does when a payment is received.
        """
        for entity, id_ in self.c.index_payment(payment_id, old, new):
            target = self.c.entities[entity].get(id_)
            if target is None:
                continue
            obj = {k: v for k, v in target.items() if k not in SYSTEM_FIELDS}
            obj["Balance"] = obj.get("TotalAmt", 0)
            if entity == "CreditMemo":
                obj["RemainingCredit"] = obj["Balance"]
            self._open_balance(entity, obj, id_)
            self._bump(target, obj)
            self.c.put(entity, obj, target)

    def _unlink_payment(self, payment_id: str, entity: str, id_: str) -> None:
        """Drop a payment's lines for one transaction (the money becomes unapplied)."""
        old = self.c.entities["Payment"][payment_id]
        obj = {k: v for k, v in old.items() if k not in SYSTEM_FIELDS}
        obj["Line"] = [
            ln
            for ln in old.get("Line") or ()
            if not any(
                lk["TxnType"] == entity and lk["TxnId"] == id_ for lk in ln.get("LinkedTxn") or ()
            )
        ]
        obj = self._payment(obj, old)
        self._bump(old, obj)
        self.c.put("Payment", obj, old)
        self._relink(payment_id, payment_links(old), payment_links(obj))

    def _void_payment(self, old: dict[str, Any]) -> dict[str, Any]:
        obj = {k: v for k, v in old.items() if k not in SYSTEM_FIELDS}
        obj["Line"] = []
        obj["TotalAmt"] = obj["UnappliedAmt"] = 0
        note = old.get("PrivateNote")
        obj["PrivateNote"] = f"Voided - {note}" if note and note != "Voided" else "Voided"
        self._bump(old, obj)
        self.c.put("Payment", obj, old)
        self.c.voided.add(("Payment", obj["Id"]))
        self._relink(old["Id"], payment_links(old), {})
        return obj

    def _payment(self, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        if old is not None and ("Payment", old["Id"]) in self.c.voided:
            raise faults.business(
                f"Payment Id={old['Id']} is voided and cannot be changed.", "Payment"
            )
        if not present(obj.get("CustomerRef")):
            raise faults.required("CustomerRef")
        customer = resolve_ref(self.c, "Customer", obj["CustomerRef"], "CustomerRef", "DisplayName")
        assert customer is not None
        obj["CustomerRef"] = customer
        total = dec(obj.get("TotalAmt"), "TotalAmt")
        if total is None:
            raise faults.required("TotalAmt")
        if total < 0:
            raise faults.business(
                f"TotalAmt cannot be negative. Supplied value:{total}", "TotalAmt"
            )
        if obj.get("TxnDate") == "":
            del obj["TxnDate"]
        check_date(obj, "TxnDate")
        obj.setdefault("TxnDate", self.today)
        check_len(obj, "PrivateNote", 4000)
        self._cash_fields(obj, required=False)
        raw_lines = obj.get("Line")
        if raw_lines in (None, ""):
            raw_lines = []
        if not isinstance(raw_lines, list):
            raise faults.invalid_property(
                "Property Name:Line specified is unsupported or invalid", "Line"
            )
        previous = payment_links(old) if old is not None else {}
        lines: list[dict[str, Any]] = []
        links: dict[tuple[str, str], Decimal] = {}
        for n, raw in enumerate(raw_lines, 1):
            line, key, amount = self._payment_line(n, raw, customer["value"])
            links[key] = links.get(key, Decimal(0)) + amount
            lines.append(line)
        applied = Decimal(0)
        for (ttype, tid), amount in links.items():
            target = self.c.get(ttype, tid)
            assert target is not None
            open_ = (
                Decimal(str(target.get("TotalAmt") or 0))
                - self.c.applied_total(ttype, tid)
                + previous.get((ttype, tid), Decimal(0))
            )
            if amount > open_:
                what = "open balance" if ttype == "Invoice" else "remaining credit"
                raise faults.business(
                    f"The amount applied to {ttype} Id={tid} ({amount}) is more than its {what} "
                    f"({open_}). You can't pay more than the amount due.",
                    "Line.Amount",
                )
            applied += amount if ttype == "Invoice" else -amount
        if applied < 0:
            raise faults.business(
                f"The credits applied ({-applied}) are more than the invoices they are applied "
                "to. Apply less credit or add invoices.",
                "Line.LinkedTxn",
            )
        if applied > total:
            raise faults.business(
                f"The amount applied to invoices ({applied}) is more than the payment amount "
                f"TotalAmt ({total}).",
                "TotalAmt",
            )
        obj["Line"] = lines
        obj["TotalAmt"] = as_json_number(total)
        obj["UnappliedAmt"] = as_json_number(total - applied)
        self._currency(obj, self.c.get("Customer", customer["value"]) or {})
        obj.setdefault("ProcessPayment", False)
        return obj

    def _payment_line(
        self, n: int, raw: Any, customer_id: str
    ) -> tuple[dict[str, Any], tuple[str, str], Decimal]:
        if not isinstance(raw, dict):
            raise faults.invalid_property(
                "Property Name:Line specified is unsupported or invalid", "Line"
            )
        amount = dec(raw.get("Amount"), "Line.Amount")
        if amount is None:
            raise faults.required("Line.Amount")
        if amount < 0:
            raise faults.business(
                f"Line {n}: Amount cannot be negative. Supplied value:{amount}", "Line.Amount"
            )
        linked = raw.get("LinkedTxn")
        if isinstance(linked, dict):
            linked = [linked]
        if not linked or not isinstance(linked, list):
            raise faults.required("Line.LinkedTxn")
        if len(linked) != 1 or not isinstance(linked[0], dict):
            raise faults.business(
                f"Line {n}: a payment line must link exactly one transaction", "Line.LinkedTxn"
            )
        tid = linked[0].get("TxnId")
        ttype = linked[0].get("TxnType")
        if not present(tid):
            raise faults.required("Line.LinkedTxn.TxnId")
        if not present(ttype):
            raise faults.required("Line.LinkedTxn.TxnType")
        ttype = next((t for t in PAYABLE if t.lower() == str(ttype).lower()), None)
        if ttype is None:
            raise faults.business(
                f"Line {n}: LinkedTxn.TxnType {linked[0].get('TxnType')} is not supported; a "
                f"payment applies to {' or '.join(PAYABLE)}.",
                "Line.LinkedTxn.TxnType",
            )
        tid = str(tid)
        target = self.c.get(ttype, tid)
        if target is None:
            raise faults.invalid_reference("Line.LinkedTxn.TxnId", tid)
        if (ttype, tid) in self.c.voided:
            raise faults.business(
                f"Line {n}: {ttype} Id={tid} is voided and cannot take a payment.",
                "Line.LinkedTxn.TxnId",
            )
        owner = (target.get("CustomerRef") or {}).get("value")
        if owner != customer_id:
            raise faults.business(
                f"Line {n}: {ttype} Id={tid} belongs to another customer (CustomerRef={owner}); "
                f"a payment from customer {customer_id} cannot be applied to it.",
                "Line.LinkedTxn.TxnId",
            )
        line = {
            "Amount": as_json_number(amount),
            "LinkedTxn": [{"TxnId": tid, "TxnType": ttype}],
        }
        return line, (ttype, tid), amount

    def _payment_method(self, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        if not present(obj.get("Name")):
            raise faults.required("Name")
        check_chars(obj, "Name")
        check_len(obj, "Name", 31)
        other = self.c.id_by_name("PaymentMethod", str(obj["Name"]))
        if other is not None and (old is None or other != old["Id"]):
            raise faults.fault(
                6240,
                "Duplicate Name Exists Error",
                "The name supplied already exists. : Another payment method is already using "
                f"this name. Please use a different name. Id={other}",
            )
        type_ = obj.get("Type") or "NON_CREDIT_CARD"
        if type_ not in PAYMENT_METHOD_TYPES:
            raise faults.business(
                f"Invalid Type: {type_}. Supported types: " + ", ".join(PAYMENT_METHOD_TYPES),
                "Type",
            )
        obj["Type"] = type_
        obj.setdefault("Active", True)
        return obj
