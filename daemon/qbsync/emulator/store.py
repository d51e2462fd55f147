"""In-memory state of one emulated QuickBooks company (realm), with O(1) indexes."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from . import seed

# While a batch runs: (entity, id) of the objects its earlier items created, which its later
# items must not see. Per request (a context variable, not company state): other requests,
# served between two items of the batch, see those objects as QuickBooks would.
BATCH_HIDDEN: ContextVar[set[tuple[str, str]] | None] = ContextVar("batch_hidden", default=None)

#: Entities the API can write, and the read-only ones.
WRITABLE = (
    "Customer",
    "Item",
    "Invoice",
    "CreditMemo",
    "Payment",
    "RefundReceipt",
    "PaymentMethod",
)
READ_ONLY = ("Account", "TaxCode", "TaxRate", "CompanyInfo", "Preferences")
ALL_ENTITIES = WRITABLE + READ_ONLY
#: path segment (lower-case) -> entity name
BY_PATH = {name.lower(): name for name in ALL_ENTITIES}
#: entities whose name must be unique (case-insensitive) and the field holding it
NAME_FIELD = {"Customer": "DisplayName", "Item": "Name", "PaymentMethod": "Name"}
#: transactions with a DocNumber (indexed, 6140 on duplicates, auto-numbered)
TRANSACTIONS = ("Invoice", "CreditMemo", "RefundReceipt")
#: transactions that can be deleted (``operation=delete``)
DELETABLE = ("Invoice", "CreditMemo", "Payment", "RefundReceipt")
#: transactions a Payment line can link to (``LinkedTxn.TxnType``)
PAYABLE = ("Invoice", "CreditMemo")
ZERO = Decimal(0)


def payment_links(payment: dict[str, Any]) -> dict[tuple[str, str], Decimal]:
    """``(TxnType, TxnId) -> amount`` applied by a (stored, normalised) Payment; a voided
    payment has no lines."""
    out: dict[tuple[str, str], Decimal] = {}
    for line in payment.get("Line") or ():
        amount = Decimal(str(line.get("Amount") or 0))
        for link in line.get("LinkedTxn") or ():
            key = (link["TxnType"], link["TxnId"])
            out[key] = out.get(key, ZERO) + amount
    return out


@dataclass
class CompanySettings:
    name: str = "Emulated Shop"
    custom_txn_numbers: bool = False
    tax_mode: str = "global"  # "global" (non-US VAT, default) or "us"
    currency: str = "EUR"
    #: Preferences.CurrencyPrefs.MultiCurrencyEnabled: off, as in a new company
    multicurrency: bool = False
    country: str = "GR"
    #: US mode only: the combined sales-tax rate applied to lines coded TAX.
    us_tax_rate: float = 8.0

    def __post_init__(self) -> None:
        if self.tax_mode not in ("global", "us"):
            raise ValueError("tax_mode must be 'global' or 'us'")


@dataclass
class Company:
    realm_id: str
    settings: CompanySettings
    entities: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    next_id: dict[str, int] = field(default_factory=dict)
    names: dict[str, dict[str, str]] = field(default_factory=dict)
    docnums: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    next_docnum: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    requestids: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: requestids being served right now -> done when their answer is stored (or failed)
    requestids_running: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    #: (TxnType, TxnId) of an invoice/credit memo -> {Payment Id: amount applied} (derived)
    applied: dict[tuple[str, str], dict[str, Decimal]] = field(default_factory=dict)
    #: (entity, Id) of the voided transactions: real answers carry no mark of it but the
    #: zeroed amounts and the "Voided" note, so the company remembers
    voided: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def new(cls, realm_id: str, settings: CompanySettings, ts: str) -> Company:
        c = cls(realm_id=realm_id, settings=settings)
        for name in ALL_ENTITIES:
            c.entities[name] = {}
            c.deleted[name] = {}
            c.next_id[name] = 1
        for name in NAME_FIELD:
            c.names[name] = {}
        for name in TRANSACTIONS:
            c.docnums[name] = {}
            c.next_docnum[name] = 1001
        c._seed(ts)
        return c

    def _seed(self, ts: str) -> None:
        s = self.settings
        for acc in seed.accounts(ts, s.currency, s.tax_mode == "us"):
            self.entities["Account"][acc["Id"]] = acc
        self.next_id["Account"] = len(self.entities["Account"]) + 1
        for method in seed.payment_methods(ts):
            self.put("PaymentMethod", method, None)
        self.next_id["PaymentMethod"] = len(self.entities["PaymentMethod"]) + 1
        if s.tax_mode == "us":
            codes, rates = seed.us_tax(ts, s.us_tax_rate)
        else:
            codes, rates = seed.global_tax(ts)
        for code in codes:
            self.entities["TaxCode"][code["Id"]] = code
        for rate in rates:
            self.entities["TaxRate"][rate["Id"]] = rate
        self.entities["CompanyInfo"][self.realm_id] = seed.company_info(
            self.realm_id, s.name, s.country, ts
        )
        self.entities["Preferences"]["1"] = seed.preferences(
            s.custom_txn_numbers, s.currency, s.tax_mode == "us", ts, s.multicurrency
        )

    # --- lookups ------------------------------------------------------------------------

    def get(self, entity: str, id_: str) -> dict[str, Any] | None:
        obj = self.entities[entity].get(id_)
        hidden = BATCH_HIDDEN.get()
        if obj is not None and hidden and (entity, id_) in hidden:
            return None
        return obj

    def visible(self, entity: str) -> list[dict[str, Any]]:
        objs = self.entities[entity].values()
        hidden = BATCH_HIDDEN.get()
        if hidden:
            return [o for o in objs if (entity, o["Id"]) not in hidden]
        return list(objs)

    def id_by_name(self, entity: str, name: str) -> str | None:
        return self.names[entity].get(name.casefold())

    def ids_by_docnum(self, entity: str, docnum: str) -> list[str]:
        return self.docnums[entity].get(docnum, [])

    def applied_total(self, entity: str, id_: str) -> Decimal:
        """What payments apply to an invoice / credit memo (0 when none)."""
        by = self.applied.get((entity, id_))
        return sum(by.values(), ZERO) if by else ZERO

    def payments_of(self, entity: str, id_: str) -> list[str]:
        by = self.applied.get((entity, id_))
        return sorted(by, key=int) if by else []

    def index_payment(
        self,
        payment_id: str,
        old: dict[tuple[str, str], Decimal],
        new: dict[tuple[str, str], Decimal],
    ) -> list[tuple[str, str]]:
        """Move a payment's applications from ``old`` to ``new``; returns the changed keys."""
        changed = []
        for key in old.keys() | new.keys():
            amount = new.get(key, ZERO)
            if old.get(key, ZERO) == amount:
                continue
            by = self.applied.setdefault(key, {})
            if amount:
                by[payment_id] = amount
            else:
                by.pop(payment_id, None)
                if not by:
                    del self.applied[key]
            changed.append(key)
        return changed

    # --- writes -------------------------------------------------------------------------

    def allocate_id(self, entity: str) -> str:
        n = self.next_id[entity]
        self.next_id[entity] = n + 1
        return str(n)

    def allocate_docnum(self, entity: str) -> str:
        """Next automatic DocNumber (QBO starts at 1001), skipping numbers in use."""
        n = self.next_docnum[entity]
        while str(n) in self.docnums[entity]:
            n += 1
        self.next_docnum[entity] = n + 1
        return str(n)

    def put(self, entity: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        id_ = obj["Id"]
        name_field = NAME_FIELD.get(entity)
        if name_field:
            if old is not None and old.get(name_field):
                self.names[entity].pop(str(old[name_field]).casefold(), None)
            if obj.get(name_field):
                self.names[entity][str(obj[name_field]).casefold()] = id_
        if entity in self.docnums:
            if old is not None and old.get("DocNumber"):
                self._unindex_docnum(entity, old["DocNumber"], id_)
            if obj.get("DocNumber"):
                self.docnums[entity].setdefault(obj["DocNumber"], []).append(id_)
        self.entities[entity][id_] = obj

    def _unindex_docnum(self, entity: str, docnum: str, id_: str) -> None:
        ids = self.docnums[entity].get(docnum)
        if ids and id_ in ids:
            ids.remove(id_)
            if not ids:
                del self.docnums[entity][docnum]

    def remove(self, entity: str, id_: str, tombstone: dict[str, Any]) -> None:
        obj = self.entities[entity].pop(id_)
        self.voided.discard((entity, id_))
        if obj.get("DocNumber") and entity in self.docnums:
            self._unindex_docnum(entity, obj["DocNumber"], id_)
        name_field = NAME_FIELD.get(entity)
        if name_field and obj.get(name_field):
            key = str(obj[name_field]).casefold()
            if self.names[entity].get(key) == id_:
                del self.names[entity][key]
        self.deleted[entity][id_] = tombstone

    # --- snapshot -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "realm_id": self.realm_id,
            "settings": asdict(self.settings),
            "entities": self.entities,
            "next_id": self.next_id,
            "next_docnum": self.next_docnum,
            "deleted": self.deleted,
            "requestids": {k: list(v) for k, v in self.requestids.items()},
            "voided": sorted([entity, id_] for entity, id_ in self.voided),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Company:
        c = cls(realm_id=data["realm_id"], settings=CompanySettings(**data["settings"]))
        c.entities = {k: dict(v) for k, v in data["entities"].items()}
        c.next_id = dict(data["next_id"])
        c.next_docnum = dict(data["next_docnum"])
        c.deleted = {k: dict(v) for k, v in data["deleted"].items()}
        c.requestids = {k: (int(v[0]), str(v[1])) for k, v in data["requestids"].items()}
        c.voided = {(str(e), str(i)) for e, i in data.get("voided", ())}
        # snapshots written when voided transactions were marked "Voided": true
        for name, objs in c.entities.items():
            for obj in objs.values():
                if obj.pop("Voided", None):
                    c.voided.add((name, obj["Id"]))
                    if name == "Payment":
                        obj["Line"] = []
        # snapshots written before an entity type existed
        for name in ALL_ENTITIES:
            c.entities.setdefault(name, {})
            c.deleted.setdefault(name, {})
            c.next_id.setdefault(name, 1)
        if not c.entities["PaymentMethod"]:
            info = c.entities["CompanyInfo"].get(c.realm_id) or {}
            ts = (info.get("MetaData") or {}).get("CreateTime", "2000-01-01T00:00:00-07:00")
            for method in seed.payment_methods(ts):
                c.entities["PaymentMethod"][method["Id"]] = method
            c.next_id["PaymentMethod"] = len(c.entities["PaymentMethod"]) + 1
        for name in TRANSACTIONS:
            c.next_docnum.setdefault(name, 1001)
        for name in NAME_FIELD:
            c.names[name] = {}
        for name in TRANSACTIONS:
            c.docnums[name] = {}
        for name in (*NAME_FIELD, *TRANSACTIONS):
            for obj in c.entities[name].values():
                c.put(name, obj, None)
        for payment in c.entities["Payment"].values():
            c.index_payment(payment["Id"], {}, payment_links(payment))
        return c
