"""Tax: Greek VAT (global model) TaxExcluded / TaxInclusive, discounts, US mode."""

from __future__ import annotations

from typing import Any

import httpx

from qbsync.emulator import Emulator

from .helpers import Api, fault_of, line


async def _greek_invoice(api: Api, calc: str | None) -> dict[str, Any]:
    c = await api.customer("Πελάτης Α.Ε.")
    a = await api.item("Καφές", 12.40)
    b = await api.item("Βιβλίο", 3.33)
    d = await api.item("Φάρμακο", 7.77)
    lines = [
        line(a["Id"], 2, 12.40, "1"),
        line(b["Id"], 3, 3.33, "2"),
        line(d["Id"], 1, 7.77, "3"),
        line(a["Id"], 1, 5.00, "1"),
    ]
    extra = {"GlobalTaxCalculation": calc} if calc else {}
    r = await api.invoice(c["Id"], lines, TotalAmt=1, TxnTaxDetail={"TotalTax": 99}, **extra)
    assert r.status_code == 200, r.text
    return r.json()["Invoice"]


def _tax_by_rate(inv: dict[str, Any]) -> dict[float, tuple[float, float]]:
    return {
        t["TaxLineDetail"]["TaxPercent"]: (t["Amount"], t["TaxLineDetail"]["NetAmountTaxable"])
        for t in inv["TxnTaxDetail"]["TaxLine"]
    }


async def test_tax_excluded_is_default(api: Api) -> None:
    inv = await _greek_invoice(api, None)
    assert inv["GlobalTaxCalculation"] == "TaxExcluded"
    # 24%: 29.80 -> 7.152 -> 7.15 ; 13%: 9.99 -> 1.2987 -> 1.30 ; 6%: 7.77 -> 0.4662 -> 0.47
    assert _tax_by_rate(inv) == {24: (7.15, 29.8), 13: (1.3, 9.99), 6: (0.47, 7.77)}
    assert inv["TxnTaxDetail"]["TotalTax"] == 8.92
    assert inv["TotalAmt"] == 56.48
    assert inv["Balance"] == 56.48
    sub = [ln for ln in inv["Line"] if ln["DetailType"] == "SubTotalLineDetail"]
    assert sub[0]["Amount"] == 47.56


async def test_tax_inclusive(api: Api) -> None:
    inv = await _greek_invoice(api, "TaxInclusive")
    # 24%: 29.80*24/124 = 5.7677 -> 5.77 ; 13%: 9.99*13/113 = 1.1493 -> 1.15 ;
    # 6%: 7.77*6/106 = 0.4398 -> 0.44
    assert _tax_by_rate(inv) == {24: (5.77, 24.03), 13: (1.15, 8.84), 6: (0.44, 7.33)}
    assert inv["TxnTaxDetail"]["TotalTax"] == 7.36
    assert inv["TotalAmt"] == 47.56  # the gross line amounts
    assert inv["Balance"] == 47.56


async def test_zero_rate_and_not_applicable(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("Export")
    inv = (await api.invoice(c["Id"], [line(it["Id"], 1, 100, "4")])).json()["Invoice"]
    assert inv["TxnTaxDetail"]["TotalTax"] == 0
    assert inv["TotalAmt"] == 100
    assert _tax_by_rate(inv) == {0: (0, 100)}
    inv = (
        await api.invoice(
            c["Id"], [line(it["Id"], 1, 100, "1")], GlobalTaxCalculation="NotApplicable"
        )
    ).json()["Invoice"]
    assert inv["TotalAmt"] == 100
    assert inv["TxnTaxDetail"]["TotalTax"] == 0


async def test_discount_lines(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    lines = [line(it["Id"], 1, 100, "1"), line(it["Id"], 1, 100, "2")]
    fixed = {
        "DetailType": "DiscountLineDetail",
        "Amount": 20,
        "DiscountLineDetail": {"PercentBased": False},
    }
    inv = (await api.invoice(c["Id"], [*lines, fixed])).json()["Invoice"]
    # base per code 90: 21.60 + 11.70 tax
    assert inv["TxnTaxDetail"]["TotalTax"] == 33.3
    assert inv["TotalAmt"] == 213.3
    pct = {
        "DetailType": "DiscountLineDetail",
        "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": 10},
    }
    inv = (await api.invoice(c["Id"], [*lines, pct])).json()["Invoice"]
    assert inv["TotalAmt"] == 213.3
    disc = [ln for ln in inv["Line"] if ln["DetailType"] == "DiscountLineDetail"]
    assert disc[0]["Amount"] == 20
    kinds = [ln["DetailType"] for ln in inv["Line"]]
    assert kinds == [
        "SalesItemLineDetail",
        "SalesItemLineDetail",
        "SubTotalLineDetail",
        "DiscountLineDetail",
    ]


async def test_us_mode(emu: Emulator, http: httpx.AsyncClient) -> None:
    realm = emu.create_company("US Shop", tax_mode="us", us_tax_rate=8.0)
    api = Api(http, emu, realm)
    c = await api.customer("Joe")
    it = await api.item("Gadget")
    r = await api.invoice(c["Id"], [line(it["Id"], 1, 100, "TAX"), line(it["Id"], 1, 50, "NON")])
    assert r.status_code == 200, r.text
    inv = r.json()["Invoice"]
    assert inv["TxnTaxDetail"]["TotalTax"] == 8
    assert inv["TxnTaxDetail"]["TxnTaxCodeRef"] == {"value": "1"}
    assert inv["TotalAmt"] == 158
    assert "GlobalTaxCalculation" not in inv
    r = await api.invoice(c["Id"], [line(it["Id"], 1, 100, "1")])
    err = fault_of(r)
    assert r.status_code == 400
    assert err["code"] == "6100"
    r = await api.get("taxcode/TAX")
    assert r.json()["TaxCode"]["Id"] == "TAX"
    info = (await api.get(f"companyinfo/{realm}")).json()["CompanyInfo"]
    assert info["Country"] == "US"
