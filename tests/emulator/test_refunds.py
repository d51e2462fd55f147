"""RefundReceipt, CreditMemo totals, and the ProfitAndLoss effect of refunds and payments."""

from __future__ import annotations

from typing import Any

import pytest

from qbsync.emulator import Emulator

from .helpers import Api, fault_of, line


def _refund(customer_id: str | None, lines: list[dict[str, Any]], **extra: Any) -> Any:
    body: dict[str, Any] = {"Line": lines, "DepositToAccountRef": {"value": "10"}, **extra}
    if customer_id is not None:
        body["CustomerRef"] = {"value": customer_id}
    return body


async def test_refund_receipt_totals_and_fields(api: Api) -> None:
    c = await api.customer("Refunded", BillAddr={"Line1": "Ermou 2", "City": "Athens"})
    goods = await api.item("Goods")
    food = await api.item("Food")
    body = _refund(
        c["Id"],
        [line(goods["Id"], 2, 50, "1"), line(food["Id"], 1, 10, "2")],
        PaymentMethodRef={"value": "1"},
        PaymentRefNum="R-9",
        PrivateNote="επιστροφή",
        DocNumber="RF-1",
        TxnDate="2025-03-05",
    )
    rr = (await api.ok("refundreceipt", body))["RefundReceipt"]
    assert rr["Id"] == "1"
    assert rr["TotalAmt"] == 135.3  # 100 + 24 + 10 + 1.3
    assert rr["TxnTaxDetail"]["TotalTax"] == 25.3
    assert rr["Balance"] == 0
    assert rr["GlobalTaxCalculation"] == "TaxExcluded"
    assert rr["DepositToAccountRef"] == {"value": "10", "name": "Τράπεζα"}
    assert rr["PaymentMethodRef"] == {"value": "1", "name": "Cash"}
    assert rr["PaymentRefNum"] == "R-9"
    assert rr["BillAddr"]["Line1"] == "Ermou 2"
    assert rr["DocNumber"] == "RF-1"
    assert "DueDate" not in rr
    assert rr["Line"][-1]["DetailType"] == "SubTotalLineDetail"
    r = await api.get("refundreceipt/1")
    assert r.json()["RefundReceipt"]["TotalAmt"] == 135.3

    inclusive = _refund(
        c["Id"], [line(goods["Id"], 1, 124, "1")], GlobalTaxCalculation="TaxInclusive"
    )
    rr2 = (await api.ok("refundreceipt", inclusive))["RefundReceipt"]
    assert (rr2["TotalAmt"], rr2["TxnTaxDetail"]["TotalTax"]) == (124, 24)
    # a cash refund without a customer is allowed
    anon = await api.ok("refundreceipt", _refund(None, [line(goods["Id"], 1, 5)]))
    assert "CustomerRef" not in anon["RefundReceipt"]
    # Undeposited Funds (Other Current Asset) is accepted as the source account too
    body = _refund(c["Id"], [line(goods["Id"], 1, 5)], DepositToAccountRef={"value": "8"})
    assert (await api.post("refundreceipt", body)).status_code == 200

    # query by DocNumber uses the index
    r = await api.query("select * from RefundReceipt where DocNumber = 'RF-1'")
    assert [x["Id"] for x in r.json()["QueryResponse"]["RefundReceipt"]] == ["1"]

    # sparse update and delete
    up = await api.ok(
        "refundreceipt", {"Id": "1", "SyncToken": "0", "sparse": True, "PrivateNote": "ok"}
    )
    assert (up["RefundReceipt"]["SyncToken"], up["RefundReceipt"]["TotalAmt"]) == ("1", 135.3)
    full = {"Id": "1", "SyncToken": "1", **_refund(c["Id"], [line(goods["Id"], 1, 10)])}
    up = (await api.ok("refundreceipt", full))["RefundReceipt"]
    assert (up["TotalAmt"], "PrivateNote" in up, "DocNumber" in up) == (12.4, False, False)
    r = await api.ok("refundreceipt", {"Id": "1", "SyncToken": "2"}, operation="delete")
    assert r["RefundReceipt"]["status"] == "Deleted"
    assert fault_of(await api.get("refundreceipt/1"))["code"] == "610"
    r = await api.post("refundreceipt", {"Id": "2", "SyncToken": "0"}, operation="void")
    assert fault_of(r)["code"] == "500"


async def test_refund_receipt_validation(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")

    async def err(body: Any, **params: Any) -> tuple[str, str]:
        e = fault_of(await api.post("refundreceipt", body, **params))
        return e["code"], e["element"]

    lines = [line(it["Id"], 1, 10)]
    assert await err({"CustomerRef": {"value": c["Id"]}, "Line": lines}) == (
        "2020",
        "DepositToAccountRef",
    )
    assert await err(_refund(c["Id"], lines, DepositToAccountRef={"value": "1"})) == (
        "6000",
        "DepositToAccountRef",
    )
    assert await err(_refund(c["Id"], lines, DepositToAccountRef={"value": "9"})) == (
        "610",
        "DepositToAccountRef",
    )
    assert await err(_refund(c["Id"], [])) == ("2020", "Line")
    assert await err(_refund(c["Id"], [line(it["Id"], 2, 10, amount=25)])) == (
        "6070",
        "Line.Amount",
    )
    assert (await err(_refund(c["Id"], [line(it["Id"], 1, 10, tax=None)])))[0] == "6000"
    assert await err(_refund(c["Id"], lines, PaymentRefNum="1" * 22)) == ("2050", "PaymentRefNum")
    assert await err(_refund(c["Id"], lines, DocNumber="D" * 22)) == ("2050", "DocNumber")
    # DocNumber: unique among RefundReceipts only
    await api.invoice(c["Id"], lines, DocNumber="SAME")
    await api.ok("refundreceipt", _refund(c["Id"], lines, DocNumber="SAME"))
    e = fault_of(await api.post("refundreceipt", _refund(c["Id"], lines, DocNumber="SAME")))
    assert e["code"] == "6140"
    assert e["Detail"].endswith("DocNumber=SAME is assigned to TxnType=RefundReceipt with TxnId=1")
    r = await api.post(
        "refundreceipt", _refund(c["Id"], lines, DocNumber="SAME"), include="allowduplicatedocnum"
    )
    assert r.status_code == 200


async def test_refund_receipt_auto_numbering(emu: Emulator, http: Any) -> None:
    realm = emu.create_company("Auto", custom_txn_numbers=False)
    api = Api(http, emu, realm)
    c = await api.customer("C")
    it = await api.item("I")
    a = await api.ok("refundreceipt", _refund(c["Id"], [line(it["Id"], 1, 1)], DocNumber="X"))
    b = await api.ok("refundreceipt", _refund(c["Id"], [line(it["Id"], 1, 1)]))
    assert (a["RefundReceipt"]["DocNumber"], b["RefundReceipt"]["DocNumber"]) == ("1001", "1002")


async def test_credit_memo_totals(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    body = {
        "CustomerRef": {"value": c["Id"]},
        "GlobalTaxCalculation": "TaxInclusive",
        "Line": [
            line(it["Id"], 2, 62, "1"),
            {
                "DetailType": "DiscountLineDetail",
                "Amount": 24,
                "DiscountLineDetail": {"PercentBased": False},
            },
        ],
    }
    cm = (await api.ok("creditmemo", body))["CreditMemo"]
    inv = (await api.ok("invoice", body))["Invoice"]
    for key in ("TotalAmt", "TxnTaxDetail"):
        assert cm[key] == inv[key]
    assert cm["TotalAmt"] == 100
    assert cm["RemainingCredit"] == cm["Balance"] == 100


def _income(report: dict[str, Any]) -> dict[str, str]:
    rows = report["Rows"]["Row"][0]["Rows"]["Row"]
    return {r["ColData"][0]["value"]: r["ColData"][1]["value"] for r in rows}


@pytest.mark.parametrize("method", ["Accrual", "Cash"])
async def test_profit_and_loss_refunds_and_payments(api: Api, method: str) -> None:
    c = await api.customer("C")
    goods = await api.item("Goods")
    inv = (await api.invoice(c["Id"], [line(goods["Id"], 1, 100)], TxnDate="2025-03-01")).json()[
        "Invoice"
    ]
    await api.ok(
        "refundreceipt", _refund(c["Id"], [line(goods["Id"], 1, 30)], TxnDate="2025-03-02")
    )
    await api.ok(
        "creditmemo",
        {
            "CustomerRef": {"value": c["Id"]},
            "TxnDate": "2025-03-03",
            "Line": [line(goods["Id"], 1, 10)],
        },
    )
    period = {"start_date": "2025-03-01", "end_date": "2025-03-31", "accounting_method": method}
    before = (await api.get("reports/ProfitAndLoss", **period)).json()
    assert before["Header"]["ReportBasis"] == method
    # half of the invoice (124 gross) paid in March, the rest in April
    await api.ok(
        "payment",
        {
            "CustomerRef": {"value": c["Id"]},
            "TotalAmt": 62,
            "TxnDate": "2025-03-10",
            "Line": [{"Amount": 62, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
        },
    )
    await api.ok(
        "payment",
        {
            "CustomerRef": {"value": c["Id"]},
            "TotalAmt": 62,
            "TxnDate": "2025-04-10",
            "Line": [{"Amount": 62, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
        },
    )
    after = (await api.get("reports/ProfitAndLoss", **period)).json()
    if method == "Accrual":
        # invoice 100 - refund 30 - credit memo 10; payments change nothing
        assert _income(before) == _income(after) == {"Sales of Product Income": "60.00"}
    else:
        # refund -30 at once; the credit memo is never applied; half the invoice is paid
        assert _income(before) == {"Sales of Product Income": "-30.00"}
        assert _income(after) == {"Sales of Product Income": "20.00"}
    r = await api.get("reports/ProfitAndLoss", accounting_method="Modified")
    assert fault_of(r)["element"] == "accounting_method"
