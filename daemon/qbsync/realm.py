"""A connected QuickBooks company as the daemon sees it: its configuration references
(tax codes by VAT rate, the income account) and its preferences."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import asyncpg

from .queries import load as load_queries

log = logging.getLogger(__name__)
Q = load_queries()


class CompanyReader(Protocol):
    async def query(self, select: str) -> list[dict[str, Any]]: ...
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

    async def reload_settings(self, pool: asyncpg.Pool) -> None:
        rows = await pool.fetch(Q.realm_settings, self.realm_id)
        self.settings = {r["name"]: r["value"] for r in rows}


def slug(name: str) -> str:
    """"Credit Card" -> "credit_card": the suffix of looked-up setting names."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _rate_key(rate: Any) -> str:
    """24.0 -> "24", 6.5 -> "6.5": the suffix of the tax_code:<rate> setting names."""
    return format(Decimal(str(rate)).normalize(), "f")


async def look_up_references(client: CompanyReader) -> dict[str, Any]:
    """What mappings may reference by configuration, looked up in the company itself:
    tax_code:<rate>, income_account, payment_method:<name>, deposit_account:undeposited_funds
    and deposit_account:bank, custom_txn_numbers."""
    found: dict[str, Any] = {}
    rates = {r["Id"]: r for r in await client.query("SELECT * FROM TaxRate")
             if r.get("Active", True)}
    for code in await client.query("SELECT * FROM TaxCode"):
        if not code.get("Active", True) or code.get("TaxGroup"):
            continue
        details = (code.get("SalesTaxRateList") or {}).get("TaxRateDetail") or []
        if len(details) != 1:
            continue
        rate = rates.get(details[0].get("TaxRateRef", {}).get("value"))
        if rate is None or "RateValue" not in rate:
            continue
        name = f"tax_code:{_rate_key(rate['RateValue'])}"
        found.setdefault(name, {"value": code["Id"], "name": code.get("Name")})
    accounts = await client.query("SELECT * FROM Account WHERE AccountType = 'Income'")
    accounts = [a for a in accounts if a.get("Active", True)]
    accounts.sort(key=lambda a: (a.get("AccountSubType") != "SalesOfProductIncome", int(a["Id"])))
    if accounts:
        found["income_account"] = {"value": accounts[0]["Id"], "name": accounts[0].get("Name")}
    for method in await client.query("SELECT * FROM PaymentMethod"):
        if method.get("Active", True) and method.get("Name"):
            found.setdefault(f"payment_method:{slug(method['Name'])}",
                             {"value": method["Id"], "name": method["Name"]})
    for account in await client.query("SELECT * FROM Account"):
        if not account.get("Active", True):
            continue
        ref = {"value": account["Id"], "name": account.get("Name")}
        if account.get("AccountSubType") == "UndepositedFunds":
            found.setdefault("deposit_account:undeposited_funds", ref)
        elif account.get("AccountType") == "Bank":
            found.setdefault("deposit_account:bank", ref)
    prefs = await client.preferences()
    custom = (prefs.get("SalesFormsPrefs") or {}).get("CustomTxnNumbers")
    found["custom_txn_numbers"] = bool(custom)
    return found


async def prepare(pool: asyncpg.Pool, realm: Realm, client: CompanyReader) -> list[str]:
    """Refresh the realm's looked-up settings (keeping DBA overrides); returns warnings."""
    found = await look_up_references(client)
    async with pool.acquire() as conn, conn.transaction():
        for name, value in found.items():
            await conn.execute(Q.save_realm_setting, realm.realm_id, name, value)
    await realm.reload_settings(pool)
    warnings = []
    if not realm.custom_txn_numbers:
        warnings.append(
            f"QuickBooks company {realm.realm_id} has custom transaction numbers off: "
            "invoices get QuickBooks' own numbers instead of the order numbers, and qbsync "
            "finds an invoice of an order by its PrivateNote marker. Turn on Account and "
            "Settings > Sales > Custom transaction numbers to keep order numbers."
        )
    return warnings
