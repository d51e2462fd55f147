"""Tax: Greek VAT (global model) TaxExcluded / TaxInclusive, discounts, US mode."""

from __future__ import annotations

from typing import Any

import httpx

from qbsync.emulator import Emulator
from tests.qbo_fixtures import rows

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


# --- tax codes as real companies return them (tests/fixtures/qbo/taxcode_*.json) ----------

def _sales_rates(code: dict[str, Any]) -> list[str]:
    details = (code.get("SalesTaxRateList") or {}).get("TaxRateDetail") or []
    return [d["TaxRateRef"]["value"] for d in details]


async def test_tax_codes_have_the_shape_of_a_real_companys(api: Api) -> None:
    codes = (await api.query("SELECT * FROM TaxCode")).json()["QueryResponse"]["TaxCode"]
    rates = {r["Id"]: r for r in
             (await api.query("SELECT * FROM TaxRate")).json()["QueryResponse"]["TaxRate"]}
    [real] = [c for c in rows("taxcode_query_us_user_defined.json", "TaxCode")
              if c["Id"] == "10"]  # a captured user-defined single-rate code
    by_id = {c["Id"]: c for c in codes}
    for code in codes:
        # the captured code's fields, including TaxGroup true on a single-rate code
        assert set(real) - {"TaxCodeConfigType"} <= set(code), code["Id"]
        assert code["TaxGroup"] is True, code["Id"]
        assert code["TaxCodeConfigType"] == real["TaxCodeConfigType"] == "USER_DEFINED"
        detail = code["SalesTaxRateList"]["TaxRateDetail"][0]
        assert {"TaxRateRef", "TaxTypeApplicable", "TaxOrder"} <= set(detail)
        assert all(r in rates for r in _sales_rates(code))
    single = [c for c in codes if len(_sales_rates(c)) == 1 and c["Active"] and not c["Hidden"]]
    assert [c["Name"] for c in single] == ["ΦΠΑ 24%", "ΦΠΑ 13%", "ΦΠΑ 6%", "ΦΠΑ 0%"]
    [group] = [c for c in codes if len(_sales_rates(c)) == 2]
    assert sum(rates[r]["RateValue"] for r in _sales_rates(group)) == 14.5
    assert by_id["5"]["Active"] is False
    assert by_id["7"]["Hidden"] is True
    assert _sales_rates(by_id["7"]) == _sales_rates(by_id["1"])  # hidden, same rate as 24 %


async def test_us_pseudo_codes_match_the_captured_ones(emu: Emulator,
                                                       http: httpx.AsyncClient) -> None:
    realm = emu.create_company("US Shop", tax_mode="us")
    api = Api(http, emu, realm)
    captured = {c["Id"]: c for c in rows("taxcode_query_us_user_defined.json", "TaxCode")
                if "SalesTaxRateList" not in c}
    codes = (await api.query("SELECT * FROM TaxCode")).json()["QueryResponse"]["TaxCode"]
    assert sorted(c["Id"] for c in codes) == sorted(captured) == ["CustomSalesTax", "NON", "TAX"]
    for code in codes:
        real = captured[code["Id"]]
        assert {k: code[k] for k in ("Name", "Taxable", "TaxGroup", "Active", "SyncToken")} == \
            {k: real[k] for k in ("Name", "Taxable", "TaxGroup", "Active", "SyncToken")}
        assert "SalesTaxRateList" not in code


async def test_a_group_code_charges_each_of_its_rates(api: Api) -> None:
    c = await api.customer("Ξενοδοχείο")
    room = await api.item("Διανυκτέρευση")
    r = await api.invoice(c["Id"], [line(room["Id"], 2, 50, "6")])
    inv = r.json()["Invoice"]
    # 100 net: 13 % VAT 13.00 and 1.5 % levy 1.50, one tax line each
    assert _tax_by_rate(inv) == {13: (13, 100), 1.5: (1.5, 100)}
    assert inv["TotalAmt"] == 114.5
    r = await api.invoice(c["Id"], [line(room["Id"], 1, 114.5, "6")],
                          GlobalTaxCalculation="TaxInclusive")
    inv = r.json()["Invoice"]
    # 114.50 gross at 14.5 %: 14.50 tax in all, on a net of 100.00
    assert _tax_by_rate(inv) == {13: (13, 100), 1.5: (1.5, 100)}
    assert inv["TxnTaxDetail"]["TotalTax"] == 14.5
    assert inv["TotalAmt"] == 114.5
