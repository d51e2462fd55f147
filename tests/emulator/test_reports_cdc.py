"""ProfitAndLoss report and change data capture."""

from __future__ import annotations

from typing import Any

from .helpers import Api, fault_of, line


def _income_rows(report: dict[str, Any]) -> dict[str, str]:
    income = report["Rows"]["Row"][0]
    assert income["type"] == "Section"
    assert income["group"] == "Income"
    return {r["ColData"][0]["value"]: r["ColData"][1]["value"] for r in income["Rows"]["Row"]}


def _summary(report: dict[str, Any], group: str) -> str:
    row = next(r for r in report["Rows"]["Row"] if r.get("group") == group)
    return row["Summary"]["ColData"][1]["value"]


async def test_profit_and_loss(api: Api) -> None:
    c = await api.customer("C")
    goods = await api.item("Goods")
    service = await api.item("Consulting", IncomeAccountRef={"value": "2"})
    # TaxExcluded: goods 100 + service 50 (net)
    await api.invoice(
        c["Id"],
        [line(goods["Id"], 1, 100, "1"), line(service["Id"], 1, 50, "2")],
        TxnDate="2025-03-10",
    )
    # TaxInclusive: 124 gross @24% -> net 100
    await api.invoice(
        c["Id"],
        [line(goods["Id"], 1, 124, "1")],
        TxnDate="2025-03-11",
        GlobalTaxCalculation="TaxInclusive",
    )
    # discount 10 on goods 100
    await api.invoice(
        c["Id"],
        [
            line(goods["Id"], 1, 100, "1"),
            {
                "DetailType": "DiscountLineDetail",
                "Amount": 10,
                "DiscountLineDetail": {"PercentBased": False},
            },
        ],
        TxnDate="2025-03-12",
    )
    # credit memo 20 on goods
    r = await api.post(
        "creditmemo",
        {
            "CustomerRef": {"value": c["Id"]},
            "TxnDate": "2025-03-13",
            "Line": [line(goods["Id"], 1, 20, "1")],
        },
    )
    assert r.status_code == 200
    # voided invoice and an invoice outside the period do not count
    v = (await api.invoice(c["Id"], [line(goods["Id"], 1, 999, "1")], TxnDate="2025-03-14")).json()[
        "Invoice"
    ]
    await api.post("invoice", {"Id": v["Id"], "SyncToken": "0"}, operation="void")
    await api.invoice(c["Id"], [line(goods["Id"], 1, 555, "1")], TxnDate="2025-05-01")

    r = await api.get("reports/ProfitAndLoss", start_date="2025-03-01", end_date="2025-03-31")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["Header"]["ReportName"] == "ProfitAndLoss"
    assert report["Header"]["StartPeriod"] == "2025-03-01"
    assert report["Header"]["EndPeriod"] == "2025-03-31"
    assert [c["ColType"] for c in report["Columns"]["Column"]] == ["Account", "Money"]
    assert _income_rows(report) == {
        "Sales of Product Income": "280.00",  # 100 + 100 + 100 - 20
        "Services": "50.00",
        "Discounts given": "-10.00",
    }
    income = report["Rows"]["Row"][0]["Summary"]["ColData"][1]["value"]
    assert income == "320.00"
    assert _summary(report, "NetIncome") == "320.00"
    assert _summary(report, "GrossProfit") == "320.00"

    r = await api.get("reports/ProfitAndLoss", start_date="2025-04-01", end_date="2025-04-30")
    assert _income_rows(r.json()) == {}
    assert _summary(r.json(), "NetIncome") == "0.00"
    r = await api.get("reports/ItemSales")
    assert r.status_code == 400
    assert fault_of(r)["code"] == "500"


async def test_cdc(api: Api) -> None:
    clock = api.emu.clock
    c = await api.customer("Old")
    it = await api.item("I")
    inv = (await api.invoice(c["Id"], [line(it["Id"], 1, 10)])).json()["Invoice"]
    api.emu.advance_time(600)
    since = clock.iso()
    api.emu.advance_time(5)
    new_c = await api.customer("New")
    await api.post("invoice", {"Id": inv["Id"], "SyncToken": "0"}, operation="delete")
    r = await api.get("cdc", entities="Customer,Invoice,Item", changedSince=since)
    assert r.status_code == 200, r.text
    resp = r.json()["CDCResponse"][0]["QueryResponse"]
    assert [next(iter(q)) if q else None for q in resp] == ["Customer", "Invoice", None]
    assert [x["Id"] for x in resp[0]["Customer"]] == [new_c["Id"]]
    assert resp[1]["Invoice"] == [
        {
            "domain": "QBO",
            "status": "Deleted",
            "Id": inv["Id"],
            "MetaData": resp[1]["Invoice"][0]["MetaData"],
        }
    ]
    # everything since before the first write
    r = await api.get("cdc", entities="Customer", changedSince="2000-01-01T00:00:00Z")
    assert fault_of(r)["element"] == "changedSince"  # older than 30 days
    old = clock.iso(clock.now() - 86400)
    r = await api.get("cdc", entities="customer", changedSince=old)
    assert len(r.json()["CDCResponse"][0]["QueryResponse"][0]["Customer"]) == 2
    r = await api.get("cdc", entities="Customer")
    assert fault_of(r)["code"] == "2020"
    r = await api.get("cdc", entities="Nope", changedSince=old)
    assert r.status_code == 400


async def test_cdc_caps_at_1000_objects(api: Api) -> None:
    since = api.emu.clock.iso(api.emu.clock.now() - 60)
    for start in range(0, 1020, 30):
        items = [
            {"bId": str(i), "operation": "create", "Customer": {"DisplayName": f"Bulk {start + i}"}}
            for i in range(30)
        ]
        r = await api.post("batch", {"BatchItemRequest": items})
        assert r.status_code == 200
    assert len(api.emu.entities(api.realm, "Customer")) == 1020
    r = await api.get("cdc", entities="Customer", changedSince=since)
    assert len(r.json()["CDCResponse"][0]["QueryResponse"][0]["Customer"]) == 1000
