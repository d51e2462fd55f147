"""A connected QuickBooks company as the daemon sees it: its configuration references
(tax codes by effective sales rate, the income account, payment methods, deposit accounts)
and its preferences (custom transaction numbers, home currency, multicurrency), looked up at
every daemon start and on request (``SELECT qbsync.request_settings_refresh ()``,
``qbsync settings --refresh``).

Tax codes: real companies mark ordinary single-rate codes ``TaxGroup: true`` (Intuit's own
sample code "California", user-defined US codes, a Canadian company's "Zero-rated": see
tests/fixtures/qbo/SOURCES.md), so ``TaxGroup`` says nothing here. A code's effective sales
rate is the sum of the ``RateValue`` of the TaxRates in its ``SalesTaxRateList``; inactive
and hidden codes are left out, and so are the codes whose rate cannot be read (a rate
QuickBooks did not return, tax on tax). When several active codes give one rate, the first
by (fewest rates, lowest Id) is used and the tie is reported, so that a DBA can choose
another with an override.

Each look-up (tax codes, income account, payment methods, deposit accounts, preferences) is
made on its own: one that QuickBooks refuses (e.g. HTTP 400 to ``select * from
PaymentMethod``) is reported and leaves only its own settings unresolved.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import asyncpg

from .model import currency_code
from .qbo.errors import AuthError, Forbidden, QboError
from .queries import load as load_queries

log = logging.getLogger(__name__)
Q = load_queries()

#: Look-up groups; qbsync.setting_group() names the same ones in SQL.
GROUPS = ("tax_code", "income_account", "payment_method", "deposit_account", "preferences")
#: The US pseudo tax codes every US company has (sales tax set by QuickBooks on the invoice).
US_PSEUDO_CODES = ("TAX", "NON")


class CompanyReader(Protocol):
    async def query_all(self, select: str) -> list[dict[str, Any]]: ...
    async def preferences(self) -> dict[str, Any]: ...


@dataclass
class Realm:
    realm_id: str
    api_base_url: str
    company_name: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def custom_txn_numbers(self) -> bool:
        """DocNumber = order number needs custom transaction numbers on in QuickBooks."""
        return bool(self.settings.get("custom_txn_numbers", True))

    @property
    def home_currency(self) -> str | None:
        """The company's currency (ISO 4217, as QuickBooks writes it: "USD"); None until
        looked up (or when the look-up was refused)."""
        return currency_code(self.settings.get("home_currency"))

    @property
    def multicurrency(self) -> bool | None:
        """Whether the company takes transactions in other currencies; None when unknown."""
        value = self.settings.get("multicurrency")
        return None if value is None else _flag(value, False)

    def missing(self, names: set[str]) -> list[str]:
        """The settings of `names` this company has no value for, sorted."""
        return sorted(name for name in names if name not in self.settings)

    async def reload_settings(self, pool: asyncpg.Pool) -> None:
        rows = await pool.fetch(Q.realm_settings, self.realm_id)
        self.settings = {r["name"]: r["value"] for r in rows}


def slug(name: str) -> str:
    """"Credit Card" -> "credit_card": the suffix of looked-up setting names."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _rate_key(rate: Decimal) -> str:
    """24.0 -> "24", 6.5 -> "6.5": the suffix of the tax_code:<rate> setting names."""
    return format(rate.normalize(), "f")


def _flag(value: Any, default: bool) -> bool:
    """A boolean field as QuickBooks sends it (JSON true/false; "true"/"false" seen too)."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _id_order(code_id: str) -> tuple[int, int, str]:
    return (0, int(code_id), "") if code_id.isdigit() else (1, 0, code_id)


@dataclass(frozen=True)
class TaxCodeRate:
    """An active tax code with the sales rate it charges in all."""

    id: str
    name: str | None
    rate: Decimal
    rates: int  # how many TaxRates make it up

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "rate": _rate_key(self.rate),
                "rates": self.rates}


def tax_code_rates(codes: list[dict[str, Any]], rates: list[dict[str, Any]]
                   ) -> tuple[dict[str, list[TaxCodeRate]], list[str]]:
    """Setting name ("tax_code:<rate>") -> the active codes with that effective sales rate,
    the one to use first; and a note for each code left out because its rate cannot be
    read. Codes without sales rates (the US TAX / NON / CustomSalesTax pseudo-codes, purchase
    codes) are not tax_code:<rate> candidates and get no note."""
    by_id = {str(r.get("Id")): r for r in rates}
    found: dict[str, list[TaxCodeRate]] = {}
    notes: list[str] = []
    for code in codes:
        if not _flag(code.get("Active"), True) or _flag(code.get("Hidden"), False):
            continue
        details = (code.get("SalesTaxRateList") or {}).get("TaxRateDetail") or []
        if isinstance(details, dict):
            details = [details]
        if not details:
            continue
        label = f'tax code "{code.get("Name")}" (Id {code.get("Id")})'
        total = Decimal(0)
        problem = None
        for detail in details:
            applies = detail.get("TaxTypeApplicable") or "TaxOnAmount"
            if applies != "TaxOnAmount":
                problem = f"charges tax on tax ({applies}): its rate is not a sum"
                break
            ref = str((detail.get("TaxRateRef") or {}).get("value", ""))
            rate = by_id.get(ref)
            if rate is None:
                problem = f"uses TaxRate {ref}, which QuickBooks did not return"
                break
            if not _flag(rate.get("Active"), True):
                problem = f"uses TaxRate {ref}, which is inactive"
                break
            try:
                total += Decimal(str(rate["RateValue"]))
            except (KeyError, InvalidOperation):
                problem = f"uses TaxRate {ref}, which has no RateValue"
                break
        if problem:
            notes.append(f"{label} {problem}; set an override to use it")
            continue
        found.setdefault(f"tax_code:{_rate_key(total)}", []).append(
            TaxCodeRate(str(code["Id"]), code.get("Name"), total, len(details)))
    for candidates in found.values():
        candidates.sort(key=lambda c: (c.rates, _id_order(c.id)))
    return found, notes


@dataclass
class Lookup:
    """What a look-up found: setting values, the groups looked up completely, the ones
    QuickBooks refused (group -> its answer), tax rates several codes give, notes."""

    found: dict[str, Any] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    ties: dict[str, list[TaxCodeRate]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def problems(self) -> dict[str, Any]:
        return {"refused": self.refused, "skipped": self.skipped,
                "ties": {name: [c.as_json() for c in codes] for name, codes in self.ties.items()}}

    def warnings(self, realm_id: str) -> list[str]:
        out = [f"QuickBooks company {realm_id} refused the look-up of {group} settings "
               f"({answer}): they stay unresolved; rows that need one wait for it (see "
               "qbsync.missing_settings)" for group, answer in self.refused.items()]
        for name, codes in self.ties.items():
            listed = " and ".join(f'"{c.name}" (Id {c.id})' for c in codes)
            out.append(f"{name}: QuickBooks company {realm_id} has {len(codes)} active tax "
                       f"codes with this rate, {listed}; using Id {codes[0].id} (choose "
                       f"another with SELECT qbsync.override_setting ('{name}', "
                       f"'{{\"value\": \"<Id>\"}}'))")
        out += [f"QuickBooks company {realm_id}: {note}" for note in self.skipped]
        return out


async def _group(lookup: Lookup, group: str, read: Callable[[], Awaitable[None]]) -> None:
    """Run one look-up; QuickBooks refusing it (a fault no retry cures) is recorded, and
    leaves the other look-ups alone. A retryable error (429, 5xx, no answer) propagates: the
    caller waits it out. So do an authentication or authorization failure, which concern
    the whole company."""
    try:
        await read()
    except (Forbidden, AuthError):
        raise
    except QboError as exc:
        if exc.retryable:
            raise
        lookup.refused[group] = exc.describe()
        return
    lookup.done.append(group)


async def look_up_references(client: CompanyReader) -> Lookup:
    """What mappings may reference by configuration, looked up in the company itself:
    tax_code:<rate> (and tax_code:TAX / tax_code:NON in US companies), income_account,
    payment_method:<name>, deposit_account:undeposited_funds and deposit_account:bank,
    custom_txn_numbers, home_currency ({"value": "USD"}: a mapping may send it as a
    CurrencyRef) and multicurrency."""
    lookup = Lookup()
    found = lookup.found

    async def tax_codes() -> None:
        rates = await client.query_all("SELECT * FROM TaxRate")
        codes = await client.query_all("SELECT * FROM TaxCode")
        by_rate, lookup.skipped = tax_code_rates(codes, rates)
        for name, candidates in sorted(by_rate.items()):
            first = candidates[0]
            found[name] = {"value": first.id, "name": first.name}
            if len(candidates) > 1:
                lookup.ties[name] = candidates
        for code in codes:
            if str(code.get("Id")) in US_PSEUDO_CODES and _flag(code.get("Active"), True):
                found[f"tax_code:{code['Id']}"] = {"value": code["Id"], "name": code.get("Name")}

    accounts: list[dict[str, Any]] = []

    async def income_account() -> None:
        accounts.extend(a for a in await client.query_all("SELECT * FROM Account")
                        if _flag(a.get("Active"), True))
        income = [a for a in accounts if a.get("AccountType") == "Income"]
        income.sort(key=lambda a: (a.get("AccountSubType") != "SalesOfProductIncome",
                                   _id_order(str(a["Id"]))))
        if income:
            found["income_account"] = {"value": income[0]["Id"], "name": income[0].get("Name")}

    async def payment_methods() -> None:
        for method in await client.query_all("SELECT * FROM PaymentMethod"):
            if _flag(method.get("Active"), True) and method.get("Name"):
                found.setdefault(f"payment_method:{slug(method['Name'])}",
                                 {"value": method["Id"], "name": method["Name"]})

    async def deposit_accounts() -> None:
        for account in sorted(accounts, key=lambda a: _id_order(str(a["Id"]))):
            ref = {"value": account["Id"], "name": account.get("Name")}
            if account.get("AccountSubType") == "UndepositedFunds":
                found.setdefault("deposit_account:undeposited_funds", ref)
            elif account.get("AccountType") == "Bank":
                found.setdefault("deposit_account:bank", ref)

    async def preferences() -> None:
        prefs = await client.preferences()
        custom = (prefs.get("SalesFormsPrefs") or {}).get("CustomTxnNumbers")
        found["custom_txn_numbers"] = bool(custom)
        currency = prefs.get("CurrencyPrefs") or {}
        home = currency_code(currency.get("HomeCurrency"))
        if home is not None:
            found["home_currency"] = {"value": home}
        if currency.get("MultiCurrencyEnabled") is not None:
            found["multicurrency"] = _flag(currency["MultiCurrencyEnabled"], False)

    await _group(lookup, "tax_code", tax_codes)
    await _group(lookup, "income_account", income_account)
    await _group(lookup, "payment_method", payment_methods)
    if "income_account" in lookup.done:  # the same Account query
        await _group(lookup, "deposit_account", deposit_accounts)
    else:
        lookup.refused["deposit_account"] = lookup.refused["income_account"]
    await _group(lookup, "preferences", preferences)
    return lookup


@dataclass
class Prepared:
    """A look-up stored: what to log, and what the database said (saved, removed, missing)."""

    lookup: Lookup
    warnings: list[str]
    stored: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {**self.stored, "refused": self.lookup.refused,
                "ties": self.lookup.problems()["ties"], "skipped": self.lookup.skipped}


async def prepare(pool: asyncpg.Pool, realm: Realm, client: CompanyReader) -> Prepared:
    """Look the company's settings up and store them (keeping DBA overrides; rows waiting
    for a setting found go on); returns what an operator should hear about."""
    lookup = await look_up_references(client)
    stored = await pool.fetchval(Q.store_lookup, realm.realm_id, json.dumps(lookup.found),
                                 lookup.done, json.dumps(lookup.problems()))
    await realm.reload_settings(pool)
    warnings = lookup.warnings(realm.realm_id)
    if "preferences" in lookup.done and not realm.custom_txn_numbers:
        warnings.append(
            f"QuickBooks company {realm.realm_id} has custom transaction numbers off: "
            "invoices get QuickBooks' own numbers instead of the order numbers, and qbsync "
            "finds an invoice of an order by its PrivateNote marker. Turn on Account and "
            "Settings > Sales > Custom transaction numbers to keep order numbers."
        )
    return Prepared(lookup, warnings, json.loads(stored or "{}"))
