"""Currencies: Preferences.CurrencyPrefs in the shape of Intuit's sample (single currency by
default), a foreign CurrencyRef refused in a company with multicurrency off, and in a
multicurrency company the customer's currency, ExchangeRate and HomeTotalAmt."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from qbsync.emulator import Emulator
from tests.qbo_fixtures import load

from .helpers import Api, fault_of, line

UNDEPOSITED = {"value": "8"}  # the seeded Undeposited Funds account


def stored(api: Api, entity: str) -> list[dict[str, Any]]:
    return api.emu.entities(api.realm, entity)


async def test_preferences_say_the_home_currency_as_intuits_sample_does(
        emu: Emulator, http: httpx.AsyncClient, api: Api) -> None:
    sample = load("preferences_read.json")["Preferences"]["CurrencyPrefs"]
    prefs = (await api.get("preferences")).json()["Preferences"]["CurrencyPrefs"]
    assert list(prefs) == list(sample) == ["HomeCurrency", "MultiCurrencyEnabled"]
    assert prefs == {"HomeCurrency": {"value": "EUR"}, "MultiCurrencyEnabled": False}
    us = Api(http, emu, emu.create_company("US", tax_mode="us"))
    assert (await us.get("preferences")).json()["Preferences"]["CurrencyPrefs"] == sample
    multi = Api(http, emu, emu.create_company("Multi", currency="gbp", multicurrency=True))
    assert (await multi.get("preferences")).json()["Preferences"]["CurrencyPrefs"] == {
        "HomeCurrency": {"value": "GBP"}, "MultiCurrencyEnabled": True}


async def test_a_single_currency_company_takes_its_own_currency(api: Api) -> None:
    c = await api.customer("Alice")
    assert c["CurrencyRef"] == {"value": "EUR"}
    it = await api.item("Tea")
    r = await api.invoice(c["Id"], [line(it["Id"], 2, 10)], CurrencyRef={"value": "EUR"})
    assert r.status_code == 200, r.text
    invoice = r.json()["Invoice"]
    assert invoice["CurrencyRef"] == {"value": "EUR"}
    assert not {"ExchangeRate", "HomeTotalAmt"} & set(invoice)


@pytest.mark.parametrize("entity", ["invoice", "payment", "refundreceipt", "customer"])
async def test_a_single_currency_company_refuses_another_currency(api: Api,
                                                                  entity: str) -> None:
    c = await api.customer("Alice")
    it = await api.item("Tea")
    invoice = (await api.invoice(c["Id"], [line(it["Id"], 2, 10)])).json()["Invoice"]
    body = {
        "invoice": {"CustomerRef": {"value": c["Id"]}, "Line": [line(it["Id"], 1, 10)]},
        "payment": {"CustomerRef": {"value": c["Id"]}, "TotalAmt": 20, "Line": [
            {"Amount": 20, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}]},
        "refundreceipt": {"CustomerRef": {"value": c["Id"]}, "Line": [line(it["Id"], 1, 10)],
                          "DepositToAccountRef": UNDEPOSITED},
        "customer": {"DisplayName": "Bob"},
    }[entity]
    before = {e: len(stored(api, e)) for e in ("Invoice", "Payment", "RefundReceipt",
                                               "Customer")}
    r = await api.post(entity, {**body, "CurrencyRef": {"value": "USD"}})
    assert r.status_code == 400
    error = fault_of(r)
    assert (error["code"], error["element"]) == ("6000", "CurrencyRef")
    assert "Multicurrency is not enabled" in error["Detail"]
    assert "EUR" in error["Detail"]
    assert "USD" in error["Detail"]
    assert {e: len(stored(api, e)) for e in before} == before   # nothing stored
    r = await api.post(entity, {**body, "CurrencyRef": "USD"})
    assert (r.status_code, fault_of(r)["code"]) == (400, "2010")


async def test_a_multicurrency_company_books_in_the_customers_currency(
        emu: Emulator, http: httpx.AsyncClient) -> None:
    api = Api(http, emu, emu.create_company("Multi", multicurrency=True))
    home = await api.customer("Home")
    dollars = await api.customer("Dollars", CurrencyRef={"value": "USD"})
    assert (home["CurrencyRef"], dollars["CurrencyRef"]) == ({"value": "EUR"},
                                                             {"value": "USD"})
    it = await api.item("Tea")
    # in the customer's currency by default, at the rate sent (1 when none is)
    usd = (await api.invoice(dollars["Id"], [line(it["Id"], 2, 10)])).json()["Invoice"]
    assert (usd["CurrencyRef"], usd["ExchangeRate"]) == ({"value": "USD"}, 1)
    assert usd["HomeTotalAmt"] == usd["TotalAmt"]
    r = await api.invoice(dollars["Id"], [line(it["Id"], 2, 10)],
                          CurrencyRef={"value": "USD"}, ExchangeRate=0.9)
    assert r.status_code == 200, r.text
    priced = r.json()["Invoice"]
    assert priced["ExchangeRate"] == 0.9
    assert priced["HomeTotalAmt"] == round(priced["TotalAmt"] * 0.9, 2)
    eur = (await api.invoice(home["Id"], [line(it["Id"], 1, 10)])).json()["Invoice"]
    assert eur["CurrencyRef"] == {"value": "EUR"}
    assert not {"ExchangeRate", "HomeTotalAmt"} & set(eur)
    # not in another currency than the customer's
    r = await api.invoice(home["Id"], [line(it["Id"], 1, 10)], CurrencyRef={"value": "USD"})
    assert (fault_of(r)["code"], fault_of(r)["element"]) == ("6000", "CurrencyRef")
    assert "customer's currency is EUR" in fault_of(r)["Detail"]
    # a customer's currency is the one it was created with
    kept = await api.ok("customer", {"Id": dollars["Id"], "SyncToken": "0",
                                     "DisplayName": "Dollars", "CurrencyRef": {"value": "EUR"}})
    assert kept["Customer"]["CurrencyRef"] == {"value": "USD"}
